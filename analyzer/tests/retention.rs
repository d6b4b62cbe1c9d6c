//! Retention on a real SQLite file: expiry, and downsampling that keeps
//! each bucket's floor and peak.

use heaptide_analyzer::ingest::ValidBatch;
use heaptide_analyzer::select::Selector;
use heaptide_analyzer::store::{RetentionPolicy, SqliteStore, Store};
use heaptide_testkit::fixtures;

const H: i64 = 3_600_000;

/// A batch of `fds` samples. Its times lie in 1970, which ingest's clock
/// checks would refuse, so it is handed to the store as already valid.
fn batch(ts: &[(i64, f64)]) -> ValidBatch {
    let mut batch = fixtures::batch(fixtures::agent("svc", "i", 1, 0), 1, 0);
    batch.samples = ts
        .iter()
        .map(|(t, v)| fixtures::metrics(*t, &[("fds", *v)]))
        .collect();
    ValidBatch {
        batch,
        profiles: vec![],
    }
}

#[test]
fn old_samples_are_downsampled_with_min_and_max_and_expired_ones_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("r.db")).unwrap();
    let now = 100 * 24 * H;
    // Ten days of 10-second samples would be slow to write; a few hours at
    // each age is enough: 8 days old (expired), 2 days old (1-minute
    // buckets) and 1 hour old (raw). Values saw-tooth between 10 and 40.
    let mut pts = Vec::new();
    for base in [now - 8 * 24 * H, now - 48 * H, now - H] {
        for k in 0..360 {
            pts.push((
                base + k * 10_000,
                [10.0, 20.0, 30.0, 40.0, 25.0, 15.0][k as usize % 6],
            ));
        }
    }
    store.ingest(&batch(&pts), now).unwrap();
    let report = store
        .retain(now, &RetentionPolicy::with_retention(7 * 24 * H))
        .unwrap();
    assert_eq!(report.samples_deleted, 360);
    assert_eq!(report.samples_downsampled, 360);
    let all = Selector {
        service: Some("svc".into()),
        ..Selector::all(0, now)
    };
    let points = store.series(&all, "fds").unwrap();
    let (old, recent): (Vec<_>, Vec<_>) = points.iter().partition(|p| p.ts_ms < now - 24 * H);
    assert_eq!(recent.len(), 360, "raw samples under 24h stay");
    assert_eq!(
        old.len(),
        60,
        "an hour of 10 s samples becomes 60 one-minute buckets"
    );
    for p in &old {
        assert_eq!(p.ts_ms % 60_000, 0);
        assert_eq!((p.min, p.max), (10.0, 40.0), "floor and peak kept");
        assert!((p.value - 23.333).abs() < 0.01, "mean {}", p.value);
    }
    // A second pass changes nothing already at its resolution.
    let again = store
        .retain(now, &RetentionPolicy::with_retention(7 * 24 * H))
        .unwrap();
    assert_eq!(again.samples_deleted, 0);
    assert_eq!(store.series(&all, "fds").unwrap().len(), 420);
}

#[test]
fn read_commands_refuse_a_missing_store_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let err = SqliteStore::open_read_only(&path)
        .err()
        .expect("a missing store is an error");
    assert!(err.to_string().contains("nope.db"), "{err}");
    assert!(!path.exists(), "nothing was created");
}
