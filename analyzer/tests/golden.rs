//! The JSON of `leaks` and `predict` against a golden file: its schema is a
//! contract (`docs/cli.md`). Bless an intended change with
//! `HEAPTIDE_BLESS=1 cargo test -p heaptide-analyzer --test golden`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use heaptide_analyzer::detect::{analyze, Options, Query};
use heaptide_analyzer::store::{DecodedProfile, SqliteStore, Store, ValidBatch};
use heaptide_wire::pprof::{build_heap_profile, encode_gzip, Frame, StackSample};
use heaptide_wire::*;

const T0: i64 = 1_800_000_000_000;

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("HEAPTIDE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; bless it with HEAPTIDE_BLESS=1",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from its golden file:\n{actual}"
    );
}

fn f(name: &str) -> Frame {
    Frame {
        function: name.into(),
        file: "src/main.rs".into(),
        line: 52,
    }
}

#[test]
fn leaks_json_matches_its_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("g.db")).unwrap();
    let mut samples = Vec::new();
    let mut profiles = Vec::new();
    let mut decoded = Vec::new();
    // Two hours at 10 s: heap grows 30 MiB/h with a fixed wobble, fds grow
    // 20/h as regular files, threads stay flat.
    for i in 0..720i64 {
        let ts = T0 + i * 10_000;
        let h = i as f64 / 360.0;
        let wobble = ((i * 37) % 11) as f64;
        samples.push(Sample {
            ts_ms: ts,
            metrics: BTreeMap::from([
                (
                    "heap.allocated".to_owned(),
                    100.0 * 1048576.0 + 30.0 * 1048576.0 * h + wobble * 65536.0,
                ),
                (
                    "process.rss".to_owned(),
                    150.0 * 1048576.0 + wobble * 4096.0,
                ),
                ("fds".to_owned(), (40.0 + 20.0 * h).floor() + (wobble % 3.0)),
                ("fds.file".to_owned(), (10.0 + 20.0 * h).floor()),
                ("fds.socket".to_owned(), 5.0 + (wobble % 3.0)),
                ("threads".to_owned(), 12.0),
                ("tcp".to_owned(), 3.0),
                ("limit.nofile.soft".to_owned(), 1024.0),
                ("limit.physical_memory".to_owned(), 8.0 * 1073741824.0),
                ("limit.nproc".to_owned(), 4096.0),
            ]),
        });
        if i % 6 == 0 {
            let stacks = vec![
                StackSample {
                    frames: vec![
                        f("alloc::alloc::alloc"),
                        f("leaky_service::leak_request_buffer"),
                        f("main"),
                    ],
                    objects: i,
                    bytes: (30.0 * 1048576.0 * h) as i64 + 1,
                },
                StackSample {
                    frames: vec![
                        f("alloc::alloc::alloc"),
                        f("leaky_service::steady"),
                        f("main"),
                    ],
                    objects: 9,
                    bytes: 9 << 20,
                },
            ];
            decoded.push(DecodedProfile {
                raw: encode_gzip(&build_heap_profile(&stacks, 524288, ts * 1_000_000)),
                stacks,
            });
            profiles.push(Profile {
                ts_ms: ts,
                sample_period_bytes: 524288,
                pprof_gz_base64: String::new(),
            });
        }
    }
    let batch = Batch {
        version: WIRE_VERSION,
        agent: AgentInfo {
            service: "golden".into(),
            instance: "g-1".into(),
            host: "h".into(),
            pid: 7,
            start_time_ms: T0 - 1000,
            agent_version: "t".into(),
            labels: BTreeMap::new(),
        },
        seq: 1,
        sent_at_ms: T0,
        heap_profiling: HeapProfilingStatus {
            enabled: true,
            reason: None,
            sample_period_bytes: Some(524288),
        },
        agent_stats: AgentStats::default(),
        samples,
        pause_events: vec![],
        profiles,
    };
    store
        .ingest(
            &ValidBatch {
                batch,
                profiles: decoded,
            },
            T0 + 7_200_000,
        )
        .unwrap();
    let q = Query {
        service: None,
        instance: None,
        from_ms: T0,
        to_ms: T0 + 7_200_000,
    };
    let all = analyze(&store, &q, &Options::default()).unwrap();
    let leaks = all.clone().leaks();
    let resources: Vec<&str> = leaks.findings.iter().map(|f| f.resource.name()).collect();
    assert_eq!(resources, vec!["fds", "heap"], "fds run out first");
    golden("leaks.json", &serde_json::to_string_pretty(&leaks).unwrap());
    golden("predict.json", &serde_json::to_string_pretty(&all).unwrap());
}
