//! How the store is opened: read-only for the read commands, and with the
//! durability the operator chose.

use heaptide_analyzer::ingest::{accept, Limits};
use heaptide_analyzer::select::Selector;
use heaptide_analyzer::store::{Durability, SqliteStore, Store};
use heaptide_testkit::fixtures;

const NOW: i64 = 1_800_000_000_000;

fn one_batch(seq: u64) -> heaptide_analyzer::ingest::ValidBatch {
    let mut b = fixtures::batch(fixtures::agent("svc", "i", 7, NOW - 60_000), seq, NOW);
    b.samples
        .push(fixtures::metrics(NOW - seq as i64, &[("fds", seq as f64)]));
    accept(b, &Limits::default(), NOW).unwrap()
}

#[test]
fn a_read_only_store_reads_and_refuses_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let store = SqliteStore::open(&path).unwrap();
    store.ingest(&one_batch(1), NOW).unwrap();
    drop(store);
    let before = std::fs::read(&path).unwrap();
    let ro = SqliteStore::open_read_only(&path).unwrap();
    let points = ro.series(&Selector::all(0, NOW + 1), "fds").unwrap();
    assert_eq!(points.len(), 1);
    let err = ro.ingest(&one_batch(2), NOW).unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    drop(ro);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is unchanged"
    );
}

#[test]
fn durability_sets_when_a_commit_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, want) in [(Durability::Normal, 1), (Durability::Full, 2)] {
        let store = SqliteStore::open_with(dir.path().join("d.db"), mode).unwrap();
        store.ingest(&one_batch(1), NOW).unwrap();
        assert_eq!(store.synchronous().unwrap(), want, "{mode:?}");
    }
    assert_eq!("full".parse::<Durability>().unwrap(), Durability::Full);
    assert!("fast".parse::<Durability>().is_err());
}
