//! The rollups' contract, on both backends: an envelope over a long
//! window, read from rollups, is the envelope of the raw samples from its
//! first whole bucket, bucket for bucket, whatever retention has since
//! done to the raw rows; a
//! replayed batch counts once; a store written before rollups existed
//! gains them when a writer opens it. On ClickHouse, the same holds once
//! the quarter hours have settled, for a batch that arrives after its
//! buckets settled, and for a store of schema 5 whose tiers are moved.

use std::collections::BTreeMap;

use heaptide_analyzer::ingest::{accept, Limits, ValidBatch};
use heaptide_analyzer::select::{now_ms, Selector};
use heaptide_analyzer::store::{
    ClickHouseStore, ClickHouseUrl, EnvelopeBucket, RetentionPolicy, SqliteStore, Store,
};
use heaptide_testkit::clickhouse::{database, ClickHouse};
use heaptide_testkit::fixtures;

const H: i64 = 3_600_000;

/// `fds` of one instance every 10 s, 3 s past each 10 s, over 26 hours:
/// a wobble on a slow climb, with a value no bucket's neighbours share.
fn points(now: i64) -> Vec<(i64, f64)> {
    let start = (now - 26 * H) / 10_000 * 10_000 + 3_000;
    (0..26 * 360)
        .map(|k| {
            let wobble = ((k * 7919) % 13) as f64;
            (start + k * 10_000, 100.0 + k as f64 / 100.0 + wobble)
        })
        .collect()
}

/// The points in batches of 500, numbered from 1.
fn batches(instance: &str, pts: &[(i64, f64)], now: i64) -> Vec<ValidBatch> {
    pts.chunks(500)
        .enumerate()
        .map(|(i, chunk)| {
            let agent = fixtures::agent("svc", instance, 7, pts[0].0);
            let mut b = fixtures::batch(agent, i as u64 + 1, now);
            b.samples = chunk
                .iter()
                .map(|(t, v)| fixtures::metrics(*t, &[("fds", *v)]))
                .collect();
            accept(b, &Limits::default(), now).unwrap()
        })
        .collect()
}

/// Where a window's read starts: a window of six hours or more at its
/// first whole bucket of the tier that serves it (quarter hours for widths
/// that are their multiples, else minutes); a shorter one at its start.
fn read_from(from: i64, to: i64, w: i64) -> i64 {
    if to - from < 6 * H {
        return from;
    }
    let res = if w % 900_000 == 0 { 900_000 } else { 60_000 };
    (from + res - 1).div_euclid(res) * res
}

/// The envelope the engine would compute from the raw points: by bucket
/// of `w`, floor, peak, count, first time and the middle of the first and
/// last, from where the window's read starts.
fn expected(pts: &[(i64, f64)], from: i64, to: i64, w: i64) -> Vec<(i64, i64, f64, f64, i64)> {
    let from = read_from(from, to, w);
    let mut by: BTreeMap<i64, (i64, i64, f64, f64, i64)> = BTreeMap::new();
    for &(t, v) in pts.iter().filter(|(t, _)| *t >= from && *t <= to) {
        let e = by.entry(t / w).or_insert((t, t, v, v, 0));
        e.0 = e.0.min(t);
        e.1 = e.1.max(t);
        e.2 = e.2.min(v);
        e.3 = e.3.max(v);
        e.4 += 1;
    }
    by.into_values()
        .map(|(first, last, lo, hi, n)| ((first + last) / 2, first, lo, hi, n))
        .collect()
}

fn shape(env: &[EnvelopeBucket]) -> Vec<(i64, i64, f64, f64, i64)> {
    env.iter()
        .map(|b| (b.ts_ms, b.first_ms, b.min, b.max, b.samples))
        .collect()
}

fn backends(dir: &std::path::Path) -> Vec<(&'static str, Box<dyn Store>, String)> {
    let ch = ClickHouse::shared();
    let db = database("rollups");
    let url = ClickHouseUrl::parse(&ch.url(&db)).unwrap();
    vec![
        (
            "sqlite",
            Box::new(SqliteStore::open(dir.join("r.db")).unwrap()),
            String::new(),
        ),
        (
            "clickhouse",
            Box::new(ClickHouseStore::open(url).unwrap()),
            db,
        ),
    ]
}

/// The windows checked, each with its width: a day at quarter hours (the
/// coarse tier), six hours at four minutes (the minute tier), the whole
/// history at quarter hours, an hour at a minute (raw), and a window that
/// ends before the data does.
fn windows(now: i64, pts: &[(i64, f64)]) -> Vec<(i64, i64, i64)> {
    vec![
        (now - 24 * H, now, 900_000),
        (now - 6 * H, now, 240_000),
        (pts[0].0, now, 900_000),
        (now - H, now, 60_000),
        // Ends inside a bucket whose later samples are outside it.
        (now - 20 * H, now - 2 * H - 7 * 60_000 - 4_000, 900_000),
    ]
}

#[test]
fn long_envelopes_from_rollups_match_the_raw_samples_and_replays_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let pts = points(now);
    for (name, store, _) in backends(dir.path()) {
        let sent = batches("a", &pts, now);
        for b in &sent {
            store.ingest(b, now).unwrap();
        }
        // Two batches again, as agents whose acknowledgements were lost
        // send them.
        store.ingest(&sent[3], now).unwrap();
        store.ingest(&sent[10], now).unwrap();
        for (from, to, w) in windows(now, &pts) {
            let sel = Selector::all(from, to).for_instance("svc", "a");
            let env = store.envelope(&sel, "fds", w).unwrap();
            assert_eq!(
                shape(&env),
                expected(&pts, from, to, w),
                "{name}: {} h at {} s",
                (to - from) / H,
                w / 1000
            );
        }
        // Retention folds raw samples older than a day into minutes; the
        // long window, read from rollups, keeps each sample's own time.
        // (It starts on a quarter hour: a partial bucket at its start
        // would be read from the folded rows, which keep only minutes.)
        store
            .retain(now, &RetentionPolicy::with_retention(7 * 24 * H))
            .unwrap();
        let (from, to, w) = (pts[0].0 / 900_000 * 900_000, now, 900_000);
        let sel = Selector::all(from, to).for_instance("svc", "a");
        let env = store.envelope(&sel, "fds", w).unwrap();
        assert_eq!(
            shape(&env),
            expected(&pts, from, to, w),
            "{name}: after retention"
        );
        // Keeping an hour expires the older buckets: SQLite by time,
        // ClickHouse by the day partitions wholly before it.
        store
            .retain(now, &RetentionPolicy::with_retention(H))
            .unwrap();
        let kept = store.envelope(&sel, "fds", w).unwrap();
        let day = 24 * H;
        let floor = (now - H - w) / day * day;
        assert!(kept.len() < env.len(), "{name}: nothing expired");
        assert!(
            kept.iter().all(|b| b.first_ms >= floor),
            "{name}: a bucket older than the retention: {:?}",
            kept.first()
        );
    }
}

#[test]
fn a_service_envelope_splits_by_instance_as_each_instance_reads_alone() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let pts = points(now);
    let shifted: Vec<(i64, f64)> = pts.iter().map(|(t, v)| (*t, v * 2.0)).collect();
    for (name, store, _) in backends(dir.path()) {
        for b in batches("a", &pts, now)
            .iter()
            .chain(&batches("b", &shifted, now))
        {
            store.ingest(b, now).unwrap();
        }
        let day = Selector::all(now - 24 * H, now);
        let all = store
            .envelope_each(&day.for_service("svc"), &["fds"], 900_000)
            .unwrap();
        for (instance, mine) in [("a", &pts), ("b", &shifted)] {
            let own: Vec<EnvelopeBucket> = all["fds"]
                .iter()
                .filter(|b| &*b.instance == instance)
                .cloned()
                .collect();
            assert_eq!(
                shape(&own),
                expected(mine, now - 24 * H, now, 900_000),
                "{name}: {instance}"
            );
        }
        let latest = store
            .latest_of(&day.for_service("svc"), &["a", "b"], &["fds", "absent"])
            .unwrap();
        let both = store
            .envelopes_of(&day.for_service("svc"), &["a", "b"], &["fds"], 900_000)
            .unwrap();
        assert_eq!(
            shape(&both["b"]["fds"]),
            expected(&shifted, now - 24 * H, now, 900_000),
            "{name}: envelopes of several instances"
        );
        assert_eq!(latest.len(), 2, "{name}");
        assert_eq!(
            latest["b"]["fds"].value,
            shifted.last().unwrap().1,
            "{name}"
        );
        assert!(!latest["a"].contains_key("absent"), "{name}");
        // A window that ends before the data does: its own newest point,
        // not the series' newest; and a replay changes nothing.
        let sent = batches("a", &pts, now);
        store.ingest(&sent[sent.len() - 1], now).unwrap();
        let past = Selector::all(now - 24 * H, now - 5 * H).for_service("svc");
        let before = store.latest_of(&past, &["a", "b"], &["fds"]).unwrap();
        let newest_then = pts.iter().rev().find(|(t, _)| *t <= now - 5 * H).unwrap();
        assert_eq!(
            (before["a"]["fds"].ts_ms, before["a"]["fds"].value),
            *newest_then,
            "{name}: a past window"
        );
        let again = store
            .latest_of(&day.for_service("svc"), &["a"], &["fds"])
            .unwrap();
        assert_eq!(
            (again["a"]["fds"].ts_ms, again["a"]["fds"].value),
            *pts.last().unwrap(),
            "{name}: after a replay"
        );
    }
}

#[test]
fn a_store_from_before_rollups_gains_them_when_opened_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let pts = points(now);
    let ch = ClickHouse::shared();
    for (name, store, db) in backends(dir.path()) {
        for b in &batches("a", &pts, now) {
            store.ingest(b, now).unwrap();
        }
        drop(store);
        // Back to the schema before rollups: no rollup rows, the older
        // version recorded.
        let store: Box<dyn Store> = if db.is_empty() {
            let path = dir.path().join("r.db");
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch("DELETE FROM rollups; PRAGMA user_version = 4;")
                .unwrap();
            drop(c);
            assert!(SqliteStore::open_read_only(&path).is_err(), "{name}");
            Box::new(SqliteStore::open(&path).unwrap())
        } else {
            ch.query(&format!("TRUNCATE TABLE {db}.rollups_by_series_60000"));
            ch.query(&format!("TRUNCATE TABLE {db}.rollups_by_time_900000"));
            ch.query(&format!("TRUNCATE TABLE {db}.meta"));
            ch.query(&format!(
                "INSERT INTO {db}.meta VALUES ('schema_version', 1)"
            ));
            let url = ClickHouseUrl::parse(&ch.url(&db)).unwrap();
            assert!(
                ClickHouseStore::open_read_only(url.clone()).is_err(),
                "{name}"
            );
            Box::new(ClickHouseStore::open(url).unwrap())
        };
        let (from, to, w) = (now - 24 * H, now, 900_000);
        let sel = Selector::all(from, to).for_instance("svc", "a");
        let env = store.envelope(&sel, "fds", w).unwrap();
        assert_eq!(shape(&env), expected(&pts, from, to, w), "{name}");
    }
}

#[test]
fn a_clickhouse_store_with_schema_2_rollups_has_them_rebuilt() {
    let now = now_ms();
    let pts = points(now);
    let ch = ClickHouse::shared();
    let db = database("rollups_v2");
    let url = ClickHouseUrl::parse(&ch.url(&db)).unwrap();
    let store = ClickHouseStore::open(url.clone()).unwrap();
    for b in &batches("a", &pts, now) {
        store.ingest(b, now).unwrap();
    }
    drop(store);
    // Back to schema 2: its rollups (left empty: the rebuild fills them
    // from the samples), no `latest`, version 2.
    for t in [
        "rollups_by_series_60000_view",
        "rollups_by_time_900000_view",
        "rollups_by_series_60000",
        "rollups_by_time_900000",
        "latest_view",
        "latest",
    ] {
        ch.query(&format!("DROP TABLE {db}.{t}"));
    }
    for statement in heaptide_testkit::clickhouse::schema_2_rollups(&db) {
        ch.query(&statement);
    }
    ch.query(&format!("TRUNCATE TABLE {db}.meta"));
    ch.query(&format!(
        "INSERT INTO {db}.meta VALUES ('schema_version', 2)"
    ));
    assert!(ClickHouseStore::open_read_only(url.clone()).is_err());
    let store = ClickHouseStore::open(url).unwrap();
    let (from, to, w) = (now - 24 * H, now, 900_000);
    let sel = Selector::all(from, to).for_instance("svc", "a");
    let env = store.envelope(&sel, "fds", w).unwrap();
    assert_eq!(shape(&env), expected(&pts, from, to, w));
    let latest = store
        .latest_of(&sel.for_service("svc"), &["a"], &["fds"])
        .unwrap();
    assert_eq!(
        (latest["a"]["fds"].ts_ms, latest["a"]["fds"].value),
        *pts.last().unwrap()
    );
    assert_eq!(store.metric_names("svc", Some("a")).unwrap(), ["fds"]);
}

/// Every window of [`windows`] read from `store` is the envelope of `pts`.
fn check_windows(store: &dyn Store, pts: &[(i64, f64)], now: i64, when: &str) {
    for (from, to, w) in windows(now, pts) {
        let sel = Selector::all(from, to).for_instance("svc", "a");
        let env = store.envelope(&sel, "fds", w).unwrap();
        assert_eq!(
            shape(&env),
            expected(pts, from, to, w),
            "{when}: {} h at {} s",
            (to - from) / H,
            w / 1000
        );
    }
}

#[test]
fn settled_quarter_hours_read_as_their_rollups_and_a_late_batch_counts_at_once() {
    let now = now_ms();
    let pts = points(now);
    let ch = ClickHouse::shared();
    let db = database("settled");
    let url = ClickHouseUrl::parse(&ch.url(&db)).unwrap();
    let store = ClickHouseStore::open(url).unwrap();
    let sent = batches("a", &pts, now);
    // One batch of the day's middle is held back, to arrive late.
    let held = 12;
    for (i, b) in sent.iter().enumerate() {
        if i != held {
            store.ingest(b, now).unwrap();
        }
    }
    store.ingest(&sent[3], now).unwrap();
    let chunk = 500 * held..500 * (held + 1);
    let without: Vec<(i64, f64)> = pts
        .iter()
        .enumerate()
        .filter(|(k, _)| !chunk.contains(k))
        .map(|(_, p)| *p)
        .collect();
    check_windows(&store, &without, now, "before any settle");
    store.settle(now).unwrap();
    let settled = |ch: &ClickHouse| {
        ch.query(&format!("SELECT count() FROM {db}.settled_900000"))
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert!(settled(ch) > 90, "the day's quarter hours were not settled");
    check_windows(&store, &without, now, "settled");
    // The late batch is read at once, before the next settle, and once
    // settled again; replayed after that, it counts once.
    store.ingest(&sent[held], now).unwrap();
    check_windows(&store, &pts, now, "a late batch, not yet settled");
    store.settle(now_ms()).unwrap();
    check_windows(&store, &pts, now, "a late batch, settled");
    store.ingest(&sent[held], now).unwrap();
    store.settle(now_ms()).unwrap();
    check_windows(&store, &pts, now, "a late batch replayed");
    let late = ch.query(&format!(
        "SELECT count() FROM {db}.late WHERE from_ms = {}",
        pts[500 * held].0 / 900_000 * 900_000
    ));
    assert_eq!(late.trim(), "2", "the late batch and its replay marked");
}

#[test]
fn a_clickhouse_store_with_schema_5_rollups_has_its_tiers_moved() {
    let now = now_ms();
    let pts = points(now);
    let ch = ClickHouse::shared();
    let db = database("rollups_v5");
    let url = ClickHouseUrl::parse(&ch.url(&db)).unwrap();
    let store = ClickHouseStore::open(url.clone()).unwrap();
    let sent = batches("a", &pts, now);
    for b in &sent[..sent.len() - 1] {
        store.ingest(b, now).unwrap();
    }
    drop(store);
    // Back to schema 5: each tier in a table sorted by series in the
    // default granules, under its old name, with its rows; no settling.
    let old = |sql: String, new_name: &str, res: &str| {
        sql.replace(new_name, &format!("rollups_{res}"))
            .replace(
                "ORDER BY (bucket, segment, metric)",
                "ORDER BY (segment, metric, bucket)",
            )
            .replace("index_granularity = 256", "index_granularity = 8192")
    };
    let show = |t: &str| ch.query(&format!("SHOW CREATE TABLE {db}.{t} FORMAT TSVRaw"));
    for (new_name, res) in [
        ("rollups_by_time_900000", "900000"),
        ("rollups_by_series_60000", "60000"),
    ] {
        let view_name = format!("{new_name}_view");
        let (table, view) = (show(new_name), show(&view_name));
        assert!(table.contains("ORDER BY ("), "{table}");
        ch.query(&old(table, new_name, res));
        ch.query(&format!(
            "INSERT INTO {db}.rollups_{res} SELECT * FROM {db}.{new_name}"
        ));
        for t in [view_name.as_str(), new_name] {
            ch.query(&format!("DROP TABLE {db}.{t}"));
        }
        ch.query(&old(view, new_name, res));
    }
    ch.query(&format!("TRUNCATE TABLE {db}.meta"));
    ch.query(&format!(
        "INSERT INTO {db}.meta VALUES ('schema_version', 5)"
    ));
    assert!(ClickHouseStore::open_read_only(url.clone()).is_err());
    let store = ClickHouseStore::open(url).unwrap();
    let tables = ch.query(&format!(
        "SELECT name FROM system.tables WHERE database = '{db}' AND match(name, '^rollups_[0-9]')"
    ));
    assert_eq!(tables.trim(), "", "the old table is left");
    let minutes = show("rollups_by_series_60000");
    assert!(minutes.contains("index_granularity = 256"), "{minutes}");
    // The last batch reaches the moved table through its view.
    store.ingest(&sent[sent.len() - 1], now).unwrap();
    store.settle(now).unwrap();
    check_windows(&store, &pts, now, "moved");
}
