//! The fleet `leaks_load` judges: each instance's day of samples written
//! through the store, or a fleet kept from an earlier run reused and
//! written on to now.

use std::collections::HashMap;
use std::time::Instant;

use heaptide_analyzer::ingest::{self, Limits};
use heaptide_analyzer::store::{
    ClickHouseStore, ClickHouseUrl, InstanceInfo, Receipt, SqliteStore, Store,
};
use heaptide_testkit::{fixtures, now_ms};

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// Deterministic noise in [-1, 1).
fn wobble(i: u64) -> f64 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ i;
    (x % 20_000) as f64 / 10_000.0 - 1.0
}

/// One instance's samples of a history that began at `start`, from
/// `from` to `now` (a whole day, or a kept one's top-up), in batches of at
/// most 10,000 samples, handed to the store without waiting: the receipts
/// say when they are stored.
fn write_instance(store: &dyn Store, k: usize, start: i64, from: i64, now: i64) -> Vec<Receipt> {
    let mut receipts = Vec::new();
    let agent = fixtures::agent(
        "fleet",
        &format!("fleet-{k}"),
        1000 + k as u32,
        start - 1000,
    );
    let (heap_leak, fd_leak) = (k % 10 == 3, k % 20 == 7);
    let mut i = ((from - start) / 10_000).max(0) as u64;
    let mut ts = start + i as i64 * 10_000;
    let mut batch = fixtures::batch(agent.clone(), i + 1, ts);
    while ts < now {
        let h = (ts - start) as f64 / 3_600_000.0;
        let w = wobble(i + k as u64 * 1_000_003);
        let heap = 300.0 * MIB + 20.0 * MIB * w + if heap_leak { 10.0 * MIB * h } else { 0.0 };
        batch.samples.push(fixtures::metrics(
            ts,
            &[
                ("heap.allocated", heap),
                ("process.rss", heap + 80.0 * MIB),
                (
                    "fds",
                    (40.0 + 4.0 * w + if fd_leak { 3.0 * h } else { 0.0 }).round(),
                ),
                ("threads", 24.0),
                ("tcp", (10.0 + 3.0 * w).round()),
                ("limit.nofile.soft", 65_536.0),
                ("limit.physical_memory", 16.0 * 1024.0 * MIB),
                ("limit.nproc", 63_000.0),
            ],
        ));
        if batch.samples.len() == 10_000 {
            let full = std::mem::replace(&mut batch, fixtures::batch(agent.clone(), i, ts));
            let valid = ingest::accept(full, &Limits::default(), now).unwrap();
            receipts.push(store.submit(&valid, now).unwrap());
        }
        ts += 10_000;
        i += 1;
    }
    // One heap profile, of 300 stacks over code every instance shares.
    let stacks: Vec<_> = (0..300)
        .map(|j| {
            let (site, module) = (
                format!("fleet::site_{j}"),
                format!("fleet::module_{}", j % 20),
            );
            let bytes = 4096 * (1 + (j as i64 * 7 + k as i64) % 97);
            fixtures::stack(
                &["alloc::alloc", &site, &module, "fleet::main"],
                bytes,
                bytes / 64,
            )
        })
        .collect();
    batch
        .profiles
        .push(fixtures::heap_profile(now - 5_000, &stacks));
    let valid = ingest::accept(batch, &Limits::default(), now).unwrap();
    receipts.push(store.submit(&valid, now).unwrap());
    receipts
}

/// Every instance's samples from `from[k]` to `now` of a history that
/// began at `start`, in groups of 16, so that a batching store gathers
/// them into shared inserts.
pub(crate) fn write_fleet(store: &dyn Store, start: i64, from: &[i64], now: i64) {
    for group in (0..from.len()).collect::<Vec<_>>().chunks(16) {
        let receipts: Vec<Receipt> = group
            .iter()
            .flat_map(|k| write_instance(store, *k, start, from[*k], now))
            .collect();
        for r in receipts {
            r.wait().unwrap();
        }
    }
}

/// The store of one fleet size: a database on ClickHouse at `server`, or
/// a SQLite file at `path`; and where it is, for the CLI.
pub(crate) fn open_store(
    server: Option<String>,
    path: &std::path::Path,
) -> (Box<dyn Store>, String) {
    match server {
        Some(url) => {
            let parsed = ClickHouseUrl::parse(&url).unwrap();
            (Box::new(ClickHouseStore::open(parsed).unwrap()), url)
        }
        None => {
            let store = SqliteStore::open(path).unwrap();
            (Box::new(store), path.display().to_string())
        }
    }
}

/// With `--reuse`, when the store holds the fleet's `n` instances: the
/// time of their last sample, their kept findings forgotten. With
/// `--top-up`, each instance's samples are first written on to now, so
/// that the fleet is judged as live ingest leaves it.
pub(crate) fn reused(store: &dyn Store, location: &str, n: usize) -> Option<i64> {
    if !std::env::args().any(|a| a == "--reuse") {
        return None;
    }
    let mut instances = store.instances(None).unwrap();
    if instances.len() != n {
        return None;
    }
    if std::env::args().any(|a| a == "--top-up") {
        top_up(store, &instances);
        instances = store.instances(None).unwrap();
    }
    forget_findings(location);
    instances.iter().map(|i| i.last_seen_ms).max()
}

/// Writes each of `instances`' samples on from its last one to now.
fn top_up(store: &dyn Store, instances: &[InstanceInfo]) {
    let last: HashMap<&str, i64> = instances
        .iter()
        .map(|i| (i.instance.as_str(), i.last_seen_ms))
        .collect();
    let from: Vec<i64> = (0..instances.len())
        .map(|k| last[&*format!("fleet-{k}")] + 10_000)
        .collect();
    let start = instances.iter().map(|i| i.start_time_ms).min().unwrap() + 1000;
    let topped = Instant::now();
    write_fleet(store, start, &from, now_ms());
    eprintln!("topped up in {:.1} s", topped.elapsed().as_secs_f64());
}

/// Forgets the findings kept in the store at `location`, so that a pass
/// judges every instance again.
fn forget_findings(location: &str) {
    if let Some((server, db)) = location
        .strip_prefix("clickhouse://")
        .and_then(|rest| rest.rsplit_once('/'))
    {
        let sql = format!("TRUNCATE TABLE {db}.findings");
        heaptide_testkit::http()
            .post(&format!("http://{server}/"))
            .send(&sql)
            .unwrap();
    } else {
        let c = rusqlite::Connection::open(location).unwrap();
        c.execute("DELETE FROM findings", []).unwrap();
    }
}
