//! The store contract, run against both backends: a real SQLite file and
//! a real ClickHouse server (Debian's 18.16, started by the test with a
//! private data path on loopback ports). Every read the engine and the
//! pages make must answer alike, replays must store once, and retention
//! must expire and downsample on both, and read commands refuse a store
//! that does not exist.

use heaptide_analyzer::detect::Resource;
use heaptide_analyzer::ingest::{accept, Limits, ValidBatch};
use heaptide_analyzer::select::Selector;
use heaptide_analyzer::store::{
    ClickHouseStore, ClickHouseUrl, EvaluationState, KeptAlert, RetentionPolicy, Shard,
    SqliteStore, Store, Transition, TransitionState, Watched,
};
use heaptide_testkit::clickhouse::{database, ClickHouse};
use heaptide_testkit::fixtures;

const H: i64 = 3_600_000;

/// Both stores, fresh: a SQLite file in `dir`, and a database of its own
/// on the shared ClickHouse.
fn backends(dir: &std::path::Path) -> Vec<(&'static str, Box<dyn Store>)> {
    let ch = ClickHouse::shared();
    let url = ClickHouseUrl::parse(&ch.url(&database("contract"))).unwrap();
    vec![
        (
            "sqlite",
            Box::new(SqliteStore::open(dir.join("s.db")).unwrap()),
        ),
        ("clickhouse", Box::new(ClickHouseStore::open(url).unwrap())),
    ]
}

/// A batch of one instance: heap and fds every 10 s over `span`, a pause,
/// and two heap profiles whose `leak` site grows.
fn batch(instance: &str, seq: u64, start: i64, now: i64) -> ValidBatch {
    let mut b = fixtures::batch(fixtures::agent("svc", instance, 7, start), seq, now);
    for k in 0..60 {
        let t = start + k * 10_000;
        b.samples.push(fixtures::metrics(
            t,
            &[("heap.allocated", 1e6 + k as f64 * 1e4), ("fds", 10.0)],
        ));
    }
    b.pause_events.push(heaptide_wire::PauseEvent {
        start_ms: start + 5_000,
        duration_ms: 12.5,
        source: heaptide_wire::PauseSource::Meter,
        name: "probe".into(),
    });
    for (i, leaked) in [(0, 1_000_000), (1, 3_000_000)] {
        let stacks = [
            fixtures::stack(&["leak", "main"], leaked, 10),
            heaptide_wire::pprof::ProfileSample {
                alloc_bytes: 2_000_000,
                alloc_objects: 2_000,
                ..fixtures::stack(&["steady", "main"], 500_000, 5)
            },
        ];
        b.profiles.push(fixtures::heap_profile(
            start + 100_000 + i * 60_000,
            &stacks,
        ));
    }
    accept(b, &Limits::default(), now).unwrap()
}

#[test]
fn every_read_answers_alike_and_replays_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = heaptide_analyzer::select::now_ms();
    // On a minute, so that the envelope's minutes hold six samples each.
    let start = (now - 700_000) / 60_000 * 60_000;
    for (name, store) in backends(dir.path()) {
        let b = batch("a", 1, start, now);
        let first = store.ingest(&b, now).unwrap();
        assert!(first.new_segment, "{name}");
        // The same batch again, as an agent whose acknowledgement was lost
        // sends it: stored once.
        let again = store.ingest(&b, now + 1).unwrap();
        assert!(!again.new_segment, "{name}");
        let sel = Selector::all(start - 1, now).for_instance("svc", "a");
        let inst = store.instances(None).unwrap();
        assert_eq!(inst.len(), 1, "{name}");
        assert_eq!((inst[0].pid, inst[0].segments), (7, 1), "{name}");
        assert_eq!(store.segments("svc", "a").unwrap().len(), 1, "{name}");
        assert_eq!(
            store.metric_names("svc", None).unwrap(),
            vec!["fds", "heap.allocated"],
            "{name}"
        );
        // A cohort's names in one read: each instance's own, and none for
        // an instance the store does not hold.
        let of = store.metric_names_of("svc", &["a", "nobody"]).unwrap();
        assert_eq!(of["a"], vec!["fds", "heap.allocated"], "{name}");
        assert!(of["nobody"].is_empty(), "{name}");
        let mut all = store.all_metric_names().unwrap();
        all.sort();
        assert_eq!(all, vec!["fds", "heap.allocated"], "{name}: every name");
        assert_eq!(
            store.series(&sel, "heap.allocated").unwrap().len(),
            60,
            "{name}"
        );
        let env = store.envelope(&sel, "heap.allocated", 60_000).unwrap();
        assert_eq!(env.len(), 10, "{name}: ten one-minute buckets");
        assert_eq!(
            env.iter().map(|e| e.samples).sum::<i64>(),
            60,
            "{name}: replays counted once"
        );
        assert_eq!((env[0].min, env[0].max), (1e6, 1.05e6), "{name}");
        assert_eq!(&*env[0].instance, "a", "{name}");
        let each = store
            .envelope_each(&sel, &["heap.allocated", "fds", "absent"], 60_000)
            .unwrap();
        assert_eq!(
            each["heap.allocated"], env,
            "{name}: one metric's envelope alike either way"
        );
        assert_eq!((each["fds"].len(), each["absent"].len()), (10, 0), "{name}");
        let latest = store.latest(&sel, "heap.allocated").unwrap().unwrap();
        assert_eq!(latest.value, 1e6 + 59.0 * 1e4, "{name}");
        let each = store
            .latest_each(&sel, &["heap.allocated", "fds", "absent"])
            .unwrap();
        assert_eq!(each.len(), 2, "{name}: {each:?}");
        assert_eq!(each["heap.allocated"].value, latest.value, "{name}");
        assert_eq!(
            (each["fds"].value, each["fds"].instance.as_str()),
            (10.0, "a"),
            "{name}"
        );
        assert_eq!(store.pauses(&sel).unwrap().len(), 1, "{name}");
        profiles_read_back(name, &*store, &sel, start);
        let stats = store.stats().unwrap();
        assert_eq!(
            (stats.instances, stats.profiles, stats.stacks),
            (1, 2, 2),
            "{name}"
        );
        assert!(
            stats.disk_bytes > 0 && stats.agent_days > 0.0,
            "{name}: {stats:?}"
        );
    }
}

/// The profiles of the batch of [`batch`], by every read of them.
fn profiles_read_back(name: &str, store: &dyn Store, sel: &Selector, start: i64) {
    let profiles = store.profiles(sel).unwrap();
    assert_eq!(profiles.len(), 2, "{name}");
    // A cohort's profiles in one read are each instance's own.
    let service = Selector {
        instance: None,
        ..sel.clone()
    };
    let of = store.profiles_of(&service, &["a", "nobody"]).unwrap();
    let ids =
        |v: &[heaptide_analyzer::store::StoredProfile]| v.iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(ids(&of["a"]), ids(&profiles), "{name}");
    assert!(of["nobody"].is_empty(), "{name}");
    assert_eq!(profiles[1].total_bytes, 3_500_000, "{name}");
    let values = store.profile_values(profiles[1].id).unwrap();
    assert_eq!(values.len(), 2, "{name}");
    // What the steady stack allocated in each interval adds up over both.
    let ids: Vec<i64> = profiles.iter().map(|p| p.id).collect();
    let mut allocs: Vec<(i64, i64)> = store
        .profile_sums(&ids)
        .unwrap()
        .iter()
        .map(|v| (v.alloc_bytes, v.alloc_objects))
        .collect();
    allocs.sort();
    assert_eq!(allocs, vec![(0, 0), (4_000_000, 4_000)], "{name}");
    let ids: Vec<i64> = values.iter().map(|v| v.stack_id).collect();
    let stacks = store.stacks(&ids).unwrap();
    assert_eq!(stacks.len(), 2, "{name}");
    let leak = stacks
        .iter()
        .find(|(_, f)| &*f[0].function == "leak")
        .unwrap()
        .0;
    let series = store.site_series(sel, leak).unwrap();
    assert_eq!(
        series.iter().map(|p| p.bytes).collect::<Vec<_>>(),
        vec![1_000_000, 3_000_000],
        "{name}"
    );
    assert_eq!(store.site_points(sel).unwrap().len(), 4, "{name}");
    assert!(
        store.profile_raw(profiles[0].id).unwrap().is_some(),
        "{name}"
    );
    assert!(
        store.profile_raw(12345).is_err(),
        "{name}: an unknown profile is not found"
    );
    let near = store
        .profile_nearest("svc", "a", start + 170_000)
        .unwrap()
        .unwrap();
    assert_eq!(near.id, profiles[1].id, "{name}");
}

#[test]
fn findings_alerts_and_transitions_are_kept_per_shard() {
    let dir = tempfile::tempdir().unwrap();
    let now = heaptide_analyzer::select::now_ms();
    for (name, store) in backends(dir.path()) {
        store
            .ingest(&batch("a", 1, now - 700_000, now), now)
            .unwrap();
        store
            .keep_findings("svc", "a", 10, "{\"findings\":[]}")
            .unwrap();
        store
            .keep_findings("svc", "a", 20, "{\"newer\":1}")
            .unwrap();
        let kept = store.kept_findings(Some("svc")).unwrap();
        assert_eq!(kept.len(), 1, "{name}");
        assert_eq!(
            (kept[0].evaluated_ms, kept[0].findings.as_str()),
            (20, "{\"newer\":1}"),
            "{name}"
        );
        let alert = |k: &str| KeptAlert {
            key: k.into(),
            alert: format!("{{\"k\":\"{k}\"}}"),
        };
        let s0 = Shard { index: 0, count: 2 };
        store.keep_alerts(s0, &[alert("x"), alert("y")]).unwrap();
        store.keep_alerts(s0, &[alert("y")]).unwrap();
        let keys: Vec<String> = store
            .kept_alerts()
            .unwrap()
            .into_iter()
            .map(|a| a.key)
            .collect();
        assert_eq!(keys, vec!["y"], "{name}: the newest set replaces the last");
        let t = Transition {
            at_ms: 5,
            service: "svc".into(),
            instance: "a".into(),
            subject: "finding".into(),
            resource: Watched::Resource(Resource::Heap),
            state: TransitionState::Began,
            severity: None,
            summary: "grows".into(),
        };
        store
            .record_transitions(&[
                t.clone(),
                Transition {
                    at_ms: 6,
                    ..t.clone()
                },
            ])
            .unwrap();
        let ts = store.transitions("svc", "a", 1).unwrap();
        assert_eq!(ts, vec![Transition { at_ms: 6, ..t }], "{name}");
    }
}

#[test]
fn clickhouse_shards_keep_their_own_alerts() {
    let ch = ClickHouse::shared();
    let url = ClickHouseUrl::parse(&ch.url(&database("shards"))).unwrap();
    let a = ClickHouseStore::open(url.clone()).unwrap();
    let b = ClickHouseStore::open(url).unwrap();
    let alert = |k: &str| KeptAlert {
        key: k.into(),
        alert: "{}".into(),
    };
    a.keep_alerts(Shard { index: 0, count: 2 }, &[alert("a1")])
        .unwrap();
    b.keep_alerts(Shard { index: 1, count: 2 }, &[alert("b1")])
        .unwrap();
    // A pass of shard 0 with nothing active leaves shard 1's alone.
    a.keep_alerts(Shard { index: 0, count: 2 }, &[]).unwrap();
    let keys: Vec<String> = b
        .kept_alerts()
        .unwrap()
        .into_iter()
        .map(|a| a.key)
        .collect();
    assert_eq!(keys, vec!["b1"]);
}

#[test]
fn retention_expires_and_downsamples_on_both() {
    let dir = tempfile::tempdir().unwrap();
    // Midnight UTC of a day, so that ClickHouse's day partitions line up
    // with the ages below.
    let now = 20_000 * 24 * H + 12 * H;
    for (name, store) in backends(dir.path()) {
        let mut pts = Vec::new();
        for base in [now - 9 * 24 * H, now - 50 * H, now - H] {
            for k in 0..360 {
                pts.push((
                    base + k * 10_000,
                    [10.0, 20.0, 30.0, 40.0, 25.0, 15.0][k as usize % 6],
                ));
            }
        }
        let mut b = fixtures::batch(fixtures::agent("svc", "i", 1, 0), 1, 0);
        b.samples = pts
            .iter()
            .map(|(t, v)| fixtures::metrics(*t, &[("fds", *v)]))
            .collect();
        store
            .ingest(
                &ValidBatch {
                    batch: b,
                    profiles: vec![],
                },
                now,
            )
            .unwrap();
        let report = store
            .retain(now, &RetentionPolicy::with_retention(7 * 24 * H))
            .unwrap();
        assert_eq!(report.samples_deleted, 360, "{name}");
        assert_eq!(report.samples_downsampled, 360, "{name}");
        let all = Selector::all(0, now).for_instance("svc", "i");
        let points = store.series(&all, "fds").unwrap();
        let (old, recent): (Vec<_>, Vec<_>) = points.iter().partition(|p| p.ts_ms < now - 24 * H);
        assert_eq!(recent.len(), 360, "{name}: raw samples under a day stay");
        assert_eq!(
            old.len(),
            60,
            "{name}: an hour of 10 s samples is 60 one-minute rows"
        );
        for p in &old {
            assert_eq!((p.min, p.max), (10.0, 40.0), "{name}: floor and peak kept");
            assert!((p.value - 23.333).abs() < 0.01, "{name}: mean {}", p.value);
        }
        let env = store.envelope(&all, "fds", 24 * H).unwrap();
        assert_eq!(
            env.iter().map(|e| e.samples).sum::<i64>(),
            720,
            "{name}: rows stand for their samples"
        );
        store
            .retain(now, &RetentionPolicy::with_retention(7 * 24 * H))
            .unwrap();
        assert_eq!(
            store.series(&all, "fds").unwrap().len(),
            420,
            "{name}: a second pass changes nothing"
        );
    }
}

#[test]
fn names_that_look_like_sql_are_stored_and_read_as_names() {
    let dir = tempfile::tempdir().unwrap();
    let now = heaptide_analyzer::select::now_ms();
    let (service, instance) = ("s'vc\\", "a'); DROP TABLE samples; --é");
    for (name, store) in backends(dir.path()) {
        let mut b = fixtures::batch(fixtures::agent(service, instance, 1, now - 60_000), 1, now);
        b.samples
            .push(fixtures::metrics(now - 1_000, &[("fds", 3.0)]));
        store
            .ingest(&accept(b, &Limits::default(), now).unwrap(), now)
            .unwrap();
        let inst = store.instances(Some(service)).unwrap();
        assert_eq!(
            (inst[0].service.as_str(), inst[0].instance.as_str()),
            (service, instance),
            "{name}"
        );
        let sel = Selector::all(now - 120_000, now).for_instance(service, instance);
        assert_eq!(store.series(&sel, "fds").unwrap()[0].value, 3.0, "{name}");
        // A metric name from a query string, which ingest would refuse.
        assert!(
            store.latest(&sel, "fds' OR '1'='1").unwrap().is_none(),
            "{name}"
        );
        // Another service's name with a quote reads nothing of this one.
        assert!(store.instances(Some("s'")).unwrap().is_empty(), "{name}");
    }
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
    let url = ClickHouse::shared().url(&database("nope"));
    let err = ClickHouseStore::open_read_only(ClickHouseUrl::parse(&url).unwrap())
        .err()
        .expect("a missing database is an error");
    let shown = url.replace("clickhouse://", "clickhouse://default@");
    assert!(err.to_string().contains(&shown), "{err}");
}

/// Opens one store again.
type Opener<'a> = Box<dyn Fn() -> Box<dyn Store> + 'a>;

/// A store written before allocation counts (SQLite 6, ClickHouse 3)
/// gains their columns when opened for writing: its profiles keep their
/// live values and read no allocations, and new profiles store theirs.
#[test]
fn a_store_from_before_allocation_counts_gains_them() {
    let dir = tempfile::tempdir().unwrap();
    let now = heaptide_analyzer::select::now_ms();
    let start = (now - 700_000) / 60_000 * 60_000;
    let ch = ClickHouse::shared();
    let db = database("allocs_v3");
    let url = ClickHouseUrl::parse(&ch.url(&db)).unwrap();
    let path = dir.path().join("v6.db");
    let reopen: [(&str, Opener); 2] = [
        (
            "sqlite",
            Box::new(|| Box::new(SqliteStore::open(&path).unwrap())),
        ),
        (
            "clickhouse",
            Box::new(|| Box::new(ClickHouseStore::open(url.clone()).unwrap())),
        ),
    ];
    for (name, open) in &reopen {
        open().ingest(&batch("a", 1, start, now), now).unwrap();
        // Back to the schema before the columns.
        if *name == "sqlite" {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "ALTER TABLE profile_stacks DROP COLUMN alloc_bytes;
                 ALTER TABLE profile_stacks DROP COLUMN alloc_objects;
                 PRAGMA user_version = 6;",
            )
            .unwrap();
            assert!(SqliteStore::open_read_only(&path).is_err());
        } else {
            for column in ["alloc_bytes", "alloc_objects"] {
                ch.query(&format!(
                    "ALTER TABLE {db}.profile_stacks DROP COLUMN {column}"
                ));
            }
            ch.query(&format!("TRUNCATE TABLE {db}.meta"));
            ch.query(&format!(
                "INSERT INTO {db}.meta VALUES ('schema_version', 3)"
            ));
            assert!(ClickHouseStore::open_read_only(url.clone()).is_err());
        }
        let store = open();
        let sel = Selector::all(start - 1, now).for_instance("svc", "a");
        let old = store.profiles(&sel).unwrap();
        let values = store.profile_values(old[1].id).unwrap();
        assert_eq!(
            values.iter().map(|v| (v.bytes, v.alloc_bytes)).max(),
            Some((3_000_000, 0)),
            "{name}: live values kept, no allocations read"
        );
        store.ingest(&batch("b", 1, start, now), now).unwrap();
        let sel = Selector::all(start - 1, now).for_instance("svc", "b");
        let new = store.profiles(&sel).unwrap();
        let sums = store.profile_sums(&[new[0].id]).unwrap();
        assert_eq!(
            sums.iter().map(|v| v.alloc_bytes).max(),
            Some(2_000_000),
            "{name}: allocations stored after the upgrade"
        );
    }
}
