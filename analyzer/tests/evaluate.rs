//! Continuous evaluation on a real SQLite store: findings are kept per
//! instance, an instance without new data is not judged again, and new
//! data makes it judged again.

use heaptide_analyzer::continuous::alerts;
use heaptide_analyzer::continuous::{evaluate, kept};
use heaptide_analyzer::ingest;
use heaptide_analyzer::select::now_ms;
use heaptide_analyzer::store::{EvaluationState, SqliteStore, Store};
use heaptide_testkit::fixtures;

fn send(
    store: &SqliteStore,
    instance: &str,
    seq: u64,
    from: i64,
    to: i64,
    fds: impl Fn(i64) -> f64,
) {
    let now = now_ms();
    let agent = fixtures::agent("svc", instance, 1, now - 3_600_000);
    let mut batch = fixtures::batch(agent, seq, to);
    let mut ts = from;
    while ts < to {
        batch.samples.push(fixtures::metrics(
            ts,
            &[("fds", fds(ts)), ("limit.nofile.soft", 1024.0)],
        ));
        ts += 10_000;
    }
    store
        .ingest(
            &ingest::accept(batch, &ingest::Limits::default(), now).unwrap(),
            to,
        )
        .unwrap();
}

#[test]
fn findings_are_kept_and_judged_again_only_after_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.db")).unwrap();
    let now = now_ms();
    let start = now - 3_000_000;
    // A leaking instance (one fd a minute) and a flat one.
    send(&store, "leaky", 1, start, now - 60_000, |ts| {
        20.0 + ((ts - start) / 60_000) as f64
    });
    send(&store, "flat", 1, start, now - 60_000, |_| 20.0);
    assert!(
        kept(&store, None, now).unwrap().is_none(),
        "nothing kept before a pass"
    );

    let first = evaluate(&store, now).unwrap();
    assert_eq!((first.judged, first.skipped), (2, 0));
    let a = kept(&store, None, now).unwrap().expect("kept after a pass");
    let leaks: Vec<_> = a
        .findings
        .iter()
        .filter(|f| f.verdict == heaptide_analyzer::detect::LeakVerdict::Leak)
        .map(|f| (f.instance.as_str(), f.resource.name()))
        .collect();
    assert_eq!(leaks, vec![("leaky", "fds")]);

    let again = evaluate(&store, now + 1).unwrap();
    assert_eq!(
        (again.judged, again.skipped),
        (0, 2),
        "no new data, nothing judged"
    );

    // New data arrives after the last pass.
    send(&store, "flat", 2, now - 60_000, now + 10, |_| 20.0);
    let after = evaluate(&store, now + 20).unwrap();
    assert_eq!(after.judged, 2, "new data for the service judges it whole");
}

/// Runs the alert rules at `now` and returns (alertname, instance, state)
/// of every active alert.
fn active_alerts(store: &SqliteStore, now: i64) -> Vec<(String, String, &'static str)> {
    let rules = alerts::AlertRules::default();
    alerts::advance(store, &rules, now).unwrap();
    let mut out: Vec<_> = alerts::active(store)
        .unwrap()
        .into_iter()
        .map(|a| (a.key.alertname, a.key.instance, a.state.name()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_silent_instance_is_judged_once_then_alerted_as_not_reporting() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.db")).unwrap();
    let now = now_ms();
    let start = now - 3_600_000;
    // It leaked until it went silent ten minutes ago.
    send(&store, "gone", 1, start, now - 600_000, |ts| {
        20.0 + ((ts - start) / 60_000) as f64
    });
    assert_eq!(evaluate(&store, now).unwrap().judged, 1);
    assert_eq!(evaluate(&store, now + 60_000).unwrap().skipped, 1);
    // Silent past the 5 minute default: the silence is the alert, not
    // the leak it can no longer be judged on.
    assert_eq!(
        active_alerts(&store, now),
        vec![("HeaptideNotReporting".into(), "gone".into(), "firing")]
    );
    let history = store.transitions("svc", "gone", 10).unwrap();
    let states: Vec<(&str, &str)> = history
        .iter()
        .map(|t| (t.subject.as_str(), t.state.name()))
        .collect();
    assert_eq!(
        states,
        vec![("HeaptideNotReporting", "firing"), ("finding", "began")]
    );
}

#[test]
fn long_pauses_sustained_for_five_minutes_fire_and_a_blip_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.db")).unwrap();
    let now = now_ms();
    let pauses = |instance: &str, seq: u64, at: i64, ms: f64| {
        let agent = fixtures::agent("svc", instance, 1, now - 3_600_000);
        let mut batch = fixtures::batch(agent, seq, at);
        batch.samples.push(fixtures::metrics(at, &[("fds", 20.0)]));
        batch.pause_events = (0..20)
            .map(|i| heaptide_wire::PauseEvent {
                start_ms: at - 50_000 + i * 2_000,
                duration_ms: ms,
                source: heaptide_wire::PauseSource::Meter,
                name: String::new(),
            })
            .collect();
        let vb = ingest::accept(batch, &ingest::Limits::default(), at).unwrap();
        store.ingest(&vb, at).unwrap();
    };
    // Every minute for six minutes, pauses of 150 ms on "slow" and of
    // 20 ms on "fast".
    let mut last = Vec::new();
    for m in 0..=6 {
        let at = now + m * 60_000;
        pauses("slow", m as u64 + 1, at, 150.0);
        pauses("fast", m as u64 + 1, at, 20.0);
        last = active_alerts(&store, at);
    }
    assert_eq!(
        last,
        vec![("HeaptidePauseP99High".into(), "slow".into(), "firing")]
    );
}
