//! An instance judged with its service's cohort gets the verdict and
//! runway it gets alone, on both stores (a real SQLite file and a real
//! ClickHouse server). A cohort reads RSS's recent peak from its day's
//! envelope rather than with a read of its own; the spikes here, one
//! inside the peak's window and a higher one before it, make any other
//! peak a different runway.

use heaptide_analyzer::detect::{analyze, Finding, LeakVerdict, Options, Resource};
use heaptide_analyzer::ingest::{accept, Limits};
use heaptide_analyzer::select::{now_ms, Selector};
use heaptide_analyzer::store::{ClickHouseStore, ClickHouseUrl, SqliteStore, Store};
use heaptide_testkit::clickhouse::{database, ClickHouse};
use heaptide_testkit::fixtures;

const H: i64 = 3_600_000;
const MIB: f64 = 1024.0 * 1024.0;

/// 26 hours of RSS every 10 s, growing 40 MiB an hour from 1 GiB with a
/// wobble, under a 4 GiB limit: a spike of 1.5 GiB three hours ago and one
/// of 1 GiB half an hour ago.
fn write(store: &dyn Store, instance: &str, k: u32, now: i64) {
    let start = now - 26 * H;
    let agent = fixtures::agent("svc", instance, 100 + k, start - 1000);
    let mut samples = Vec::new();
    let mut ts = start;
    let mut i = 0u64;
    while ts < now {
        let h = (ts - start) as f64 / H as f64;
        let wobble = ((i * 7 + u64::from(k)) % 11) as f64 * MIB;
        let spike = match now - ts {
            d if (3 * H..3 * H + 10_000).contains(&d) => 1536.0 * MIB,
            d if (H / 2..H / 2 + 10_000).contains(&d) => 1024.0 * MIB,
            _ => 0.0,
        };
        samples.push(fixtures::metrics(
            ts,
            &[
                (
                    "process.rss",
                    1024.0 * MIB + 40.0 * MIB * h + wobble + spike,
                ),
                ("limit.physical_memory", 4096.0 * MIB),
            ],
        ));
        ts += 10_000;
        i += 1;
    }
    for (seq, chunk) in samples.chunks(5_000).enumerate() {
        let mut batch = fixtures::batch(agent.clone(), seq as u64 + 1, now);
        batch.samples = chunk.to_vec();
        let valid = accept(batch, &Limits::default(), now).unwrap();
        store.ingest(&valid, now).unwrap();
    }
}

fn rss(findings: Vec<Finding>, instance: &str) -> Finding {
    findings
        .into_iter()
        .find(|f| f.instance == instance && f.resource == Resource::Rss)
        .unwrap_or_else(|| panic!("no RSS finding for {instance}"))
}

fn check(name: &str, store: &dyn Store) {
    let now = now_ms();
    for (k, instance) in ["a", "b", "c"].iter().enumerate() {
        write(store, instance, k as u32, now);
    }
    let day = Selector::all(now - 24 * H, now);
    let together = analyze(store, &day, &Options::default()).unwrap().findings;
    for instance in ["a", "b", "c"] {
        let alone = Selector {
            service: Some("svc".into()),
            instance: Some(instance.into()),
            ..day.clone()
        };
        let alone = rss(
            analyze(store, &alone, &Options::default())
                .unwrap()
                .findings,
            instance,
        );
        let cohort = rss(together.clone(), instance);
        assert_eq!(
            cohort.verdict,
            LeakVerdict::Leak,
            "{name} {instance}: {}",
            cohort.reason
        );
        assert_eq!(
            cohort.time_to_exhaustion_seconds, alone.time_to_exhaustion_seconds,
            "{name} {instance}: judged with its cohort, then alone"
        );
        // Only the recent spike counts: from its peak of about 3 GiB, the
        // 1 GiB left lasts about 26 hours at 40 MiB an hour. The older
        // spike's would leave about 15, and no spike about 51.
        let hours = cohort.time_to_exhaustion_seconds.unwrap() / 3600.0;
        assert!(
            (20.0..32.0).contains(&hours),
            "{name} {instance}: {hours} h"
        );
    }
}

#[test]
fn an_instance_judged_with_its_cohort_is_judged_as_alone() {
    let dir = tempfile::tempdir().unwrap();
    check(
        "sqlite",
        &SqliteStore::open(dir.path().join("c.db")).unwrap(),
    );
    let ch = ClickHouse::shared();
    let url = ClickHouseUrl::parse(&ch.url(&database("cohorts"))).unwrap();
    check("clickhouse", &ClickHouseStore::open(url).unwrap());
}
