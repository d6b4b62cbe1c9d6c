//! How a process ended, on a real SQLite store: an OOM kill counted by
//! the cgroup across a restart, a process that stopped unannounced near
//! its memory limit, and neither for a process that shut down, or one far
//! from its limit.

use heaptide_analyzer::detect::{deaths_of, Death};
use heaptide_analyzer::ingest;
use heaptide_analyzer::select::{now_ms, Selector};
use heaptide_analyzer::store::{SqliteStore, Store};
use heaptide_testkit::fixtures;

const LIMIT: f64 = 1_000_000_000.0;

/// One process of the instance: a minute of samples ending at `end`, at
/// `rss`, with the cgroup's OOM kills at `kills`; `stopping` marks its
/// last sample as its agent's shutdown; `pressure` marks one sample.
fn process(store: &SqliteStore, pid: u32, end: i64, rss: f64, kills: f64, stopping: bool) {
    let started = end - 60_000;
    let mut batch = fixtures::batch(fixtures::agent("svc", "i-1", pid, started), 1, end);
    for k in 0..=12 {
        let ts = started + k * 5_000;
        let mut values = vec![
            ("process.rss", rss * (0.5 + k as f64 / 24.0)),
            ("limit.cgroup.memory_max", LIMIT),
            ("limit.physical_memory", 4.0 * LIMIT),
            ("cgroup.memory_events.oom_kill", kills),
        ];
        if k == 10 {
            values.push(("agent.pressure", 1.0));
        }
        if k == 12 && stopping {
            values.push(("agent.stopping", 1.0));
        }
        batch.samples.push(fixtures::metrics(ts, &values));
    }
    let now = now_ms();
    store
        .ingest(
            &ingest::accept(batch, &ingest::Limits::default(), now).unwrap(),
            now,
        )
        .unwrap();
}

fn deaths(store: &SqliteStore) -> Vec<Death> {
    let now = now_ms();
    let sel = Selector::all(now - 3_600_000, now).for_instance("svc", "i-1");
    deaths_of(store, &sel).unwrap()
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    (dir, store)
}

#[test]
fn an_oom_kill_counted_across_a_restart_is_the_earlier_process_death() {
    let (_d, s) = store();
    let now = now_ms();
    process(&s, 10, now - 600_000, 0.99 * LIMIT, 0.0, false);
    process(&s, 11, now - 60_000, 0.3 * LIMIT, 1.0, false);
    let d = deaths(&s);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].pid, d[0].cause.as_str()), (10, "oom_killed"));
    assert!(
        d[0].summary.starts_with("died: OOM-killed at 9"),
        "{}",
        d[0].summary
    );
    assert!(
        d[0].summary.ends_with("(cgroup memory.max)"),
        "{}",
        d[0].summary
    );
    assert_eq!(
        d[0].pressure_profile_ms,
        Some(now - 600_000 - 60_000 + 50_000)
    );
}

#[test]
fn an_unannounced_end_near_the_limit_is_a_kill_and_a_shutdown_is_not() {
    let (_d, s) = store();
    let now = now_ms();
    process(&s, 20, now - 900_000, 0.95 * LIMIT, 0.0, false);
    process(&s, 21, now - 600_000, 0.95 * LIMIT, 0.0, true);
    process(&s, 22, now - 300_000, 0.5 * LIMIT, 0.0, false);
    process(&s, 23, now - 60_000, 0.3 * LIMIT, 0.0, false);
    let d = deaths(&s);
    let causes: Vec<(u32, &str)> = d.iter().map(|d| (d.pid, d.cause.as_str())).collect();
    // 21 shut down near the limit, 22 stopped far from it: neither died.
    assert_eq!(causes, [(20, "killed_near_limit")], "{d:?}");
    assert!(
        d[0].summary
            .starts_with("died: killed near its memory limit"),
        "{}",
        d[0].summary
    );
}
