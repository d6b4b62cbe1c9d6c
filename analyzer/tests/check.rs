//! `analyzer check` against real SQLite stores with known growth: every
//! verdict, the baseline, every output format and every exit code.

use std::path::Path;
use std::process::{Command, Output};

use heaptide_analyzer::ingest;
use heaptide_analyzer::select::now_ms;
use heaptide_analyzer::store::{SqliteStore, Store};
use heaptide_testkit::fixtures;

const MIB: f64 = 1024.0 * 1024.0;

/// Ten minutes of one instance at one sample a second, heap growing at
/// `heap_per_hour` with `noise` (bytes, deterministic), and a profile every
/// 10 s in which `demo::grow_forever` holds the growth.
fn write(store: &SqliteStore, service: &str, heap_per_hour: f64, noise: f64) {
    let now = now_ms();
    let start = now - 600_000;
    let mut batch = fixtures::batch(fixtures::agent(service, "i1", 1, start - 1000), 1, now);
    for i in 0..600i64 {
        let ts = start + i * 1000;
        let grown = heap_per_hour * (i as f64 / 3600.0);
        // A fixed pseudo-random wobble.
        let wobble = noise * (((i * 7919) % 1000) as f64 / 500.0 - 1.0);
        batch.samples.push(fixtures::metrics(
            ts,
            &[
                ("heap.allocated", 50.0 * MIB + grown + wobble),
                ("process.rss", 80.0 * MIB + grown),
                ("fds", 20.0),
                ("threads", 8.0),
                ("pause.p99_ms", 1.0),
                ("pause.max_ms", if i == 300 { 40.0 } else { 2.0 }),
                ("app.requests", (i * 100) as f64),
            ],
        ));
        if i % 10 == 0 {
            let stacks = [
                fixtures::stack(
                    &["alloc::alloc::alloc", "demo::grow_forever", "main"],
                    grown.max(0.0) as i64 + 1,
                    i + 1,
                ),
                fixtures::stack(&["demo::steady", "main"], 10 << 20, 10),
            ];
            batch.profiles.push(fixtures::heap_profile(ts, &stacks));
        }
    }
    let valid = ingest::accept(batch, &ingest::Limits::default(), now).unwrap();
    store.ingest(&valid, now).unwrap();
}

fn check(dir: &Path, budget: &str, args: &[&str]) -> Output {
    let file = dir.join(format!("budget-{}.toml", args.len() + budget.len()));
    std::fs::write(&file, budget).unwrap();
    Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .arg("check")
        .arg("--budget")
        .arg(&file)
        .arg("--store")
        .arg(dir.join("s.db"))
        .args(if args.contains(&"--since") {
            &[][..]
        } else {
            &["--since", "15m"][..]
        })
        .args(args)
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    write(&store, "flat", 0.0, 0.2 * MIB);
    write(&store, "leaky", 200.0 * MIB, 0.2 * MIB);
    // Growth near the budget, buried in noise.
    write(&store, "noisy", 8.0 * MIB, 6.0 * MIB);
    write(&store, "mild", 3.0 * MIB, 0.01 * MIB);
    dir
}

const BUDGET: &str = r#"
[defaults]
heap_growth_per_hour = "8MiB"
peak_fds = 100
pause_max_ms = 100
"#;

#[test]
fn pass_fail_and_inconclusive_with_their_exit_codes() {
    let dir = fixture();
    let o = check(dir.path(), BUDGET, &["--service", "flat"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("PASS"));

    let o = check(dir.path(), BUDGET, &["--service", "leaky"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("FAIL") && text.contains("heap_growth_per_hour"),
        "{text}"
    );
    assert!(
        text.contains("demo::grow_forever"),
        "the failing heap names its site: {text}"
    );

    let o = check(
        dir.path(),
        BUDGET,
        &["--service", "noisy", "--format", "json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let item = &json["instances"][0]["items"][0];
    assert_eq!(item["verdict"], "inconclusive", "{json}");
    assert!(
        item["more_seconds_needed"]
            .as_f64()
            .is_some_and(|s| s > 0.0),
        "{json}"
    );
    assert_eq!(o.status.code(), Some(0), "inconclusive passes by default");
    let strict = format!("{BUDGET}inconclusive = \"fail\"\n");
    let o = check(dir.path(), &strict, &["--service", "noisy"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
}

#[test]
fn ceilings_pauses_per_request_budgets_and_suppressions() {
    let dir = fixture();
    let o = check(
        dir.path(),
        "[defaults]\npeak_fds = 10\n",
        &["--service", "flat"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("peak_fds"));
    let o = check(
        dir.path(),
        "[defaults]\npause_max_ms = 30\n",
        &["--service", "flat"],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a 40 ms pause is over 30: {}",
        out(&o)
    );
    // 200 MiB/h at 360k requests/h is about 570 KiB per 1k requests.
    let o = check(
        dir.path(),
        "[defaults]\nheap_growth_per_1k_requests = \"64KiB\"\n",
        &["--service", "leaky"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let o = check(
        dir.path(),
        "[defaults]\nheap_growth_per_1k_requests = \"4MiB\"\n",
        &["--service", "leaky"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    // Allowing the growing site lets the leak pass.
    let allowed =
        "[defaults]\nheap_growth_per_hour = \"8MiB\"\nallow_sites = [\"demo::grow_forever\"]\n";
    let o = check(dir.path(), allowed, &["--service", "leaky"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}

#[test]
fn a_baseline_catches_a_regression_under_the_absolute_budget() {
    let dir = fixture();
    let base = dir.path().join("base.json");
    let o = check(
        dir.path(),
        "[service.flat]\nheap_growth_per_hour = \"8MiB\"\n",
        &[
            "--service",
            "flat",
            "--save-baseline",
            base.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    // The "mild" service grows 3 MiB/h: under 8 MiB/h, but far over a flat
    // baseline. Compare it against the flat one's rates.
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&base).unwrap()).unwrap();
    let mut rates = b["rates"]["flat"].clone();
    rates["heap_growth_per_hour"] = serde_json::json!(0.0);
    let mild_base = dir.path().join("mild.json");
    std::fs::write(
        &mild_base,
        serde_json::json!({"version": 1, "rates": {"mild": rates}}).to_string(),
    )
    .unwrap();
    let budget = "[defaults]\nheap_growth_per_hour = \"8MiB\"\n";
    let o = check(dir.path(), budget, &["--service", "mild"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "under the absolute budget: {}",
        out(&o)
    );
    let o = check(
        dir.path(),
        budget,
        &[
            "--service",
            "mild",
            "--baseline",
            mild_base.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("baseline"), "{}", out(&o));
}

#[test]
fn junit_and_step_summary() {
    let dir = fixture();
    let summary = dir.path().join("summary.md");
    let file = dir.path().join("b.toml");
    std::fs::write(&file, BUDGET).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .args(["check", "--budget"])
        .arg(&file)
        .arg("--store")
        .arg(dir.path().join("s.db"))
        .args(["--since", "15m", "--service", "leaky", "--format", "junit"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let xml = String::from_utf8_lossy(&o.stdout);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains("<testcase classname=\"heaptide.leaky.i1\" name=\"heap_growth_per_hour\">"),
        "{xml}"
    );
    assert!(xml.contains("<failure message="), "{xml}");
    assert!(
        xml.contains("<testcase classname=\"heaptide.leaky.i1\" name=\"peak_fds\"/>"),
        "{xml}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("heaptide check") && md.contains("**fail**"),
        "{md}"
    );
}

#[test]
fn errors_exit_2_with_a_clear_message() {
    let dir = fixture();
    let o = check(
        dir.path(),
        "[defaults]\nheap_growth_per_houre = 1\n",
        &["--service", "flat"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("heap_growth_per_houre"), "{}", out(&o));
    let o = check(dir.path(), BUDGET, &["--service", "nobody"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("nobody"), "{}", out(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .args(["check", "--budget", "/nonexistent/b.toml", "--store"])
        .arg(dir.path().join("s.db"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("/nonexistent/b.toml"), "{}", out(&o));
    let file = dir.path().join("ok.toml");
    std::fs::write(&file, BUDGET).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .args(["check", "--budget"])
        .arg(&file)
        .args(["--store", "/nonexistent/s.db", "--service", "flat"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("does not exist"), "{}", out(&o));
    // Too little data: a 10 s window.
    let o = check(dir.path(), BUDGET, &["--service", "flat", "--since", "3s"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("samples"), "{}", out(&o));
}
