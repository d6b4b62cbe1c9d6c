//! Continuous evaluation on a real SQLite store: findings are kept per
//! instance, an instance without new data is not judged again, and new
//! data makes it judged again.

use heaptide_analyzer::evaluate::{evaluate, kept};
use heaptide_analyzer::ingest;
use heaptide_analyzer::select::now_ms;
use heaptide_analyzer::store::{SqliteStore, Store};
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
