//! The JSON of `leaks` and `predict` against a golden file: its schema is a
//! contract (`docs/cli.md`). Bless an intended change with
//! `HEAPTIDE_BLESS=1 cargo test -p heaptide-analyzer --test golden`.

use heaptide_analyzer::detect::{analyze, Options};
use heaptide_analyzer::ingest;
use heaptide_analyzer::select::Selector;
use heaptide_analyzer::store::{SqliteStore, Store};
use heaptide_testkit::fixtures;
use heaptide_wire::pprof::ProfileSample;

const MIB: f64 = 1024.0 * 1024.0;

const T0: i64 = 1_800_000_000_000;

fn golden(name: &str, actual: &str) {
    heaptide_testkit::golden::assert_golden(env!("CARGO_MANIFEST_DIR"), name, actual);
}

#[test]
fn leaks_json_matches_its_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("g.db")).unwrap();
    let agent = fixtures::agent("golden", "g-1", 7, T0 - 1000);
    let end = T0 + 7_200_000;
    // Two batches of an hour each: a batch carries at most 100 profiles.
    let mut batch = fixtures::batch(agent.clone(), 1, T0);
    let f = |name: &str| fixtures::frame(name, "src/main.rs", 52);
    // Two hours at 10 s: heap grows 30 MiB/h with a fixed wobble, fds grow
    // 20/h as regular files, threads stay flat.
    for i in 0..720i64 {
        let ts = T0 + i * 10_000;
        if i == 360 {
            let valid = ingest::accept(batch, &ingest::Limits::default(), end).unwrap();
            store.ingest(&valid, end).unwrap();
            batch = fixtures::batch(agent.clone(), 2, ts);
        }
        let h = i as f64 / 360.0;
        let wobble = ((i * 37) % 11) as f64;
        batch.samples.push(fixtures::metrics(
            ts,
            &[
                (
                    "heap.allocated",
                    100.0 * MIB + 30.0 * MIB * h + wobble * 65536.0,
                ),
                ("process.rss", 150.0 * MIB + wobble * 4096.0),
                ("fds", (40.0 + 20.0 * h).floor() + (wobble % 3.0)),
                ("fds.file", (10.0 + 20.0 * h).floor()),
                ("fds.socket", 5.0 + (wobble % 3.0)),
                ("threads", 12.0),
                ("tcp", 3.0),
                ("limit.nofile.soft", 1024.0),
                ("limit.physical_memory", 8.0 * 1024.0 * MIB),
                ("limit.nproc", 4096.0),
            ],
        ));
        if i % 6 == 0 {
            let stack = |leaf: &str, bytes: i64, objects: i64| ProfileSample {
                frames: vec![f("alloc::alloc::alloc"), f(leaf), f("main")],
                objects,
                bytes,
                ..Default::default()
            };
            let stacks = [
                stack(
                    "leaky_service::leak_request_buffer",
                    (30.0 * MIB * h) as i64 + 1,
                    i,
                ),
                stack("leaky_service::steady", 9 << 20, 9),
            ];
            batch.profiles.push(fixtures::heap_profile(ts, &stacks));
        }
    }
    let valid = ingest::accept(batch, &ingest::Limits::default(), end).unwrap();
    store.ingest(&valid, end).unwrap();
    let q = Selector::all(T0, end);
    let all = analyze(&store, &q, &Options::default()).unwrap();
    let leaks = all.clone().leaks();
    let resources: Vec<&str> = leaks.findings.iter().map(|f| f.resource.name()).collect();
    assert_eq!(resources, vec!["fds", "heap"], "fds run out first");
    golden("leaks.json", &serde_json::to_string_pretty(&leaks).unwrap());
    golden("predict.json", &serde_json::to_string_pretty(&all).unwrap());
}
