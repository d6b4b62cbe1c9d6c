//! `analyzer check` and `analyzer leaks` agree on the shapes real leaks
//! take: a restart inside the judged run, growth that begins halfway
//! through a day, and a staircase; and `leaks --format json` on a store
//! with no data yet gives no findings and exits 0.

use std::path::Path;
use std::process::{Command, Output};

use heaptide_analyzer::ingest;
use heaptide_analyzer::select::now_ms;
use heaptide_analyzer::store::{SqliteStore, Store};
use heaptide_testkit::fixtures;

const MIB: f64 = 1024.0 * 1024.0;
const H: i64 = 3_600_000;

/// Deterministic noise with a sigma of about one.
fn noise(i: i64) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..12)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        })
        .sum::<f64>()
        - 6.0
}

/// Writes one process lifetime of `service`/`i1` (pid `pid`) with a sample
/// every `step_ms` from `start` to `end`; `heap(hours since start)`.
fn lifetime(
    store: &SqliteStore,
    service: &str,
    pid: u32,
    span: (i64, i64),
    step_ms: i64,
    heap: impl Fn(f64) -> f64,
) {
    let (start, end) = span;
    let now = now_ms();
    let agent = fixtures::agent(service, "i1", pid, start - 1000);
    let mut batch = fixtures::batch(agent.clone(), 1, start);
    let mut ts = start;
    while ts < end {
        let h = (ts - start) as f64 / H as f64;
        batch.samples.push(fixtures::metrics(
            ts,
            &[
                ("heap.allocated", heap(h) + 2.0 * MIB * noise(ts / step_ms)),
                ("fds", 20.0),
                ("threads", 8.0),
                ("limit.physical_memory", 64.0 * 1024.0 * MIB),
            ],
        ));
        ts += step_ms;
    }
    let valid = ingest::accept(batch, &ingest::Limits::default(), now).unwrap();
    store.ingest(&valid, now).unwrap();
}

fn analyzer(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .args(args)
        .arg("--store")
        .arg(dir.join("s.db"))
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn check(dir: &Path, budget: &str, service: &str, since: &str) -> Output {
    let file = dir.join(format!("{service}.toml"));
    std::fs::write(&file, budget).unwrap();
    let file = file.display().to_string();
    analyzer(
        dir,
        &[
            "check",
            "--budget",
            &file,
            "--service",
            service,
            "--since",
            since,
        ],
    )
}

#[test]
fn a_restart_during_the_run_fails_naming_what_grew_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    let now = now_ms();
    // An OOM kill: the first process grows fast, the second is young.
    lifetime(
        &store,
        "oom",
        1,
        (now - 20 * 60_000, now - 8 * 60_000),
        1000,
        |h| 100.0 * MIB + 600.0 * MIB * h,
    );
    lifetime(&store, "oom", 2, (now - 7 * 60_000, now), 1000, |_| {
        100.0 * MIB
    });
    drop(store);
    let budget = "[defaults]\nheap_growth_per_hour = \"8MiB\"\n";
    let o = check(dir.path(), budget, "oom", "30m");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("restarts") && t.contains("pid 1 -> 2"), "{t}");
    assert!(
        t.contains("heap.allocated +"),
        "names the heap growth before it: {t}"
    );
    assert!(
        t.contains("process lifetime 1 of 2"),
        "judges the first lifetime too: {t}"
    );
    let allowed = "[defaults]\nallow_restarts = true\n";
    let o = check(dir.path(), allowed, "oom", "30m");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn check_and_leaks_agree_on_growth_that_begins_halfway_and_on_a_staircase() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    let now = now_ms();
    // Flat for 12 hours, then 20 MiB/h; a sample a minute.
    lifetime(&store, "late", 1, (now - 24 * H, now), 60_000, |h| {
        600.0 * MIB + 20.0 * MIB * (h - 12.0).max(0.0)
    });
    // 40 MiB kept every 3 hours by a batch job.
    lifetime(&store, "stairs", 1, (now - 24 * H, now), 60_000, |h| {
        800.0 * MIB + 40.0 * MIB * (h / 3.0).floor()
    });
    drop(store);
    let budget = "[defaults]\nheap_growth_per_hour = \"4MiB\"\n";
    for service in ["late", "stairs"] {
        let o = check(dir.path(), budget, service, "24h");
        assert_eq!(o.status.code(), Some(1), "{service}: {}", text(&o));
        let o = analyzer(
            dir.path(),
            &[
                "leaks",
                "--since",
                "24h",
                "--service",
                service,
                "--format",
                "json",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let heap = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["resource"] == "heap")
            .unwrap_or_else(|| panic!("{service}: no heap leak in {v}"));
        let rate = heap["slope_per_hour"].as_f64().unwrap() / MIB;
        let want = if service == "late" { 20.0 } else { 40.0 / 3.0 };
        assert!((rate - want).abs() < 0.2 * want, "{service}: {rate} MiB/h");
        assert!(heap["severity"].is_string(), "{heap}");
    }
}

#[test]
fn leaks_json_on_a_store_with_no_data_yet_is_empty_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path().join("s.db")).unwrap());
    let o = analyzer(dir.path(), &["leaks", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["findings"], serde_json::json!([]));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no data"),
        "{}",
        text(&o)
    );
}
