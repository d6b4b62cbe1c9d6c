//! Caps on distinct metric names: past them, new names are dropped from
//! their batch and counted while the rest is stored; and retention
//! deletes names whose data has expired, which frees their place.

use heaptide_analyzer::ingest::{accept, Limits};
use heaptide_analyzer::store::{RetentionPolicy, SqliteStore, Store};
use heaptide_testkit::fixtures;
use heaptide_testkit::*;
use heaptide_wire::INGEST_PATH;

const H: i64 = 3_600_000;

fn batch_of(instance: &str, seq: u64, names: &[String], now: i64) -> heaptide_wire::Batch {
    let mut b = fixtures::batch(fixtures::agent("svc", instance, 7, now - 60_000), seq, now);
    let values: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 1.0)).collect();
    b.samples.push(fixtures::metrics(now, &values));
    b
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}.{i}")).collect()
}

#[test]
fn new_names_past_the_caps_are_dropped_counted_and_the_rest_stored() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &[
            "--max-metric-names-per-instance",
            "50",
            "--max-metric-names",
            "100",
        ],
    );
    let now = now_ms();
    let mut sent = names("a", 60);
    sent.push("fds".into());
    post_batch(&an.url(INGEST_PATH), &batch_of("a", 1, &sent, now));
    let stored = an.get_json("/v1/metrics?service=svc&instance=a");
    assert_eq!(stored["metrics"].as_array().unwrap().len(), 50, "{stored}");
    // Instance b may add names until the store holds 100.
    post_batch(
        &an.url(INGEST_PATH),
        &batch_of("b", 1, &names("b", 60), now),
    );
    let stored = an.get_json("/v1/metrics?service=svc&instance=b");
    assert_eq!(stored["metrics"].as_array().unwrap().len(), 50);
    post_batch(
        &an.url(INGEST_PATH),
        &batch_of("c", 1, &names("c", 10), now),
    );
    let stored = an.get_json("/v1/metrics?service=svc&instance=c");
    assert_eq!(
        stored["metrics"],
        serde_json::json!([]),
        "no room left for c's new names"
    );
    let (_, text) = an.get("/metrics");
    assert!(
        text.contains("heaptide_ingest_metric_names_refused_total 31"),
        "11 of a, 10 of b and 10 of c: {text}"
    );
}

#[test]
fn retention_deletes_names_whose_data_has_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("n.db")).unwrap();
    let now = now_ms();
    let old = now - 10 * 24 * H;
    let b = batch_of("a", 1, &["old.gauge".to_string(), "fds".to_string()], old);
    store
        .ingest(&accept(b, &Limits::default(), old).unwrap(), old)
        .unwrap();
    let b = batch_of("a", 2, &["fds".to_string()], now);
    store
        .ingest(&accept(b, &Limits::default(), now).unwrap(), now)
        .unwrap();
    let mut all = store.all_metric_names().unwrap();
    all.sort();
    assert_eq!(all, ["fds", "old.gauge"]);
    store
        .retain(now, &RetentionPolicy::with_retention(7 * 24 * H))
        .unwrap();
    assert_eq!(store.all_metric_names().unwrap(), ["fds"]);
    // A name deleted and sent again is a name again.
    let b = batch_of("a", 3, &["old.gauge".to_string()], now + 1000);
    store
        .ingest(&accept(b, &Limits::default(), now).unwrap(), now)
        .unwrap();
    assert_eq!(store.all_metric_names().unwrap().len(), 2);
}
