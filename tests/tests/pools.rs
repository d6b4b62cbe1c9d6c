//! Pools, tasks and queues of the real leaky example, streaming to a real
//! `analyzer serve`: a deadpool pool of connections to a backend on
//! loopback that leaks, one that is only busy under bursts, tasks that
//! never finish and a consumer 20% slower than its producer.

use std::time::{Duration, Instant};

use heaptide_tests::*;

/// What a run left: `analyzer leaks --format json` over it, the
/// instance page's HTML, and `analyzer check` against `budget`.
struct Run {
    leaks: serde_json::Value,
    page: String,
    check: Option<(Option<i32>, String)>,
}

/// Runs the example for `secs`, calling `each(elapsed, leaky)` every
/// 50 ms, then reads what the analyzer made of it.
fn run_while(
    instance: &str,
    env: &[(&str, &str)],
    secs: u64,
    budget: Option<&str>,
    mut each: impl FnMut(Duration, &Proc),
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let leaky = leaky(dir.path(), &format!("http://{}", an.addr), instance, env);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        each(start.elapsed(), &leaky);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600));
    let leaks = leaks_json(&store);
    let page = an
        .get(&format!(
            "/ui/instance?service=leaky-service&instance={instance}&since=10m"
        ))
        .1;
    let check = budget.map(|b| {
        let file = dir.path().join("budget.toml");
        std::fs::write(&file, b).unwrap();
        let o = std::process::Command::new(bin("analyzer"))
            .args([
                "check",
                "--since",
                "10m",
                "--service",
                "leaky-service",
                "--budget",
            ])
            .arg(&file)
            .arg("--store")
            .arg(&store)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), text)
    });
    drop(leaky);
    Run { leaks, page, check }
}

fn leaks_while(
    instance: &str,
    env: &[(&str, &str)],
    secs: u64,
    each: impl FnMut(Duration, &Proc),
) -> serde_json::Value {
    run_while(instance, env, secs, None, each).leaks
}

fn ok(leaky: &Proc, route: &str) {
    let (status, body) = get(&leaky.url(route));
    assert_eq!(status, 200, "{route}");
    assert!(!body.starts_with("error"), "{route}: {body}");
}

fn gauge<'a>(v: &'a serde_json::Value, resource: &str, name: &str) -> &'a serde_json::Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["resource"] == resource && f["detail"][resource] == name)
        .unwrap_or_else(|| panic!("no finding for {resource} {name}: {v:#}"))
}

/// A handler that checks out a connection every 2 s and never gives it
/// back, amid queries that do: the pool's slots in use climb toward its
/// capacity of 64, with a runway.
#[test]
fn a_connection_never_returned_is_a_pool_leak_with_a_runway() {
    let mut forgotten = 0;
    let budget = "[defaults]\npool_growth_per_hour = { backend = 10 }\n";
    let run = run_while(
        "pool-leak",
        &[("LEAKY_POOL_SIZE", "64")],
        60,
        Some(budget),
        |t, l| {
            if t >= Duration::from_secs(2 * forgotten) {
                ok(l, "/pool/forget");
                forgotten += 1;
            }
            ok(l, "/pool/query?ms=2");
        },
    );
    let v = &run.leaks;
    let pool = gauge(v, "pool", "backend");
    assert_eq!(pool["verdict"], "leak", "{pool:#}");
    assert_eq!(pool["metric"], "pool.backend.in_use");
    assert_eq!(pool["limit"].as_f64(), Some(64.0), "{pool:#}");
    assert_eq!(pool["limit_source"], "pool capacity");
    // One connection every 2 s is 1,800 an hour; 64 run out within minutes.
    let rate = pool["slope_per_hour"].as_f64().unwrap();
    assert!((900.0..3_600.0).contains(&rate), "{rate}/h: {pool:#}");
    let tte = pool["time_to_exhaustion_seconds"].as_f64().unwrap();
    assert!((10.0..300.0).contains(&tte), "runway {tte} s: {pool:#}");
    // The instance page charts the pool against its capacity.
    assert!(
        run.page.contains("data-chart=\"pool-backend-in_use\"")
            && run.page.contains("pool backend, against its capacity"),
        "{}",
        run.page
    );
    // And the CI gate fails the pool's budget, by name.
    let (code, out) = run.check.unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("pool_growth_per_hour.backend"), "{out}");
}

/// The same pool, saturated by a burst of 32 queries held 200 ms every
/// 6 s (16 slots: callers wait), drains after each: busy, not leaking.
#[test]
fn a_pool_saturated_by_bursts_that_drains_is_not_a_finding() {
    let mut bursts = 0;
    let v = leaks_while("pool-burst", &[], 60, |t, l| {
        if t >= Duration::from_secs(3 + 6 * bursts) {
            ok(l, "/pool/burst?n=32&ms=200");
            bursts += 1;
        }
        ok(l, "/pool/query?ms=2");
    });
    assert!(
        v["findings"].as_array().unwrap().is_empty(),
        "false positive: {v:#}"
    );
}

/// Tasks that wait on a oneshot that never fires, and an unbounded
/// channel whose consumer is 20% slower than its producer: two findings,
/// tasks and the queue `jobs`.
#[test]
fn leaked_tasks_and_a_queue_behind_its_producer_are_found() {
    let mut started = false;
    let mut spawned = 0;
    let v = leaks_while("tasks-queue", &[], 60, |t, l| {
        if !started {
            ok(l, "/queue/start?per_s=50");
            started = true;
        }
        if t >= Duration::from_millis(500 * spawned) {
            ok(l, "/tasks/leak?n=2");
            spawned += 1;
        }
        ok(l, "/work");
    });
    let tasks = finding(&v, "tasks").unwrap_or_else(|| panic!("no tasks finding: {v:#}"));
    assert_eq!(tasks["verdict"], "leak", "{tasks:#}");
    // Two tasks every half second: 14,400 an hour.
    let rate = tasks["slope_per_hour"].as_f64().unwrap();
    assert!((7_000.0..25_000.0).contains(&rate), "{rate}/h: {tasks:#}");
    let queue = gauge(&v, "queue", "jobs");
    assert_eq!(queue["verdict"], "leak", "{queue:#}");
    // 50 in and 40 out a second: 36,000 an hour.
    let rate = queue["slope_per_hour"].as_f64().unwrap();
    assert!((20_000.0..50_000.0).contains(&rate), "{rate}/h: {queue:#}");
}
