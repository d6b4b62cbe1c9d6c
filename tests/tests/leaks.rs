//! `analyzer leaks` on the real leaky example, streaming to a real
//! `analyzer serve`, with intervals shortened so each test takes about a
//! minute.

use std::time::{Duration, Instant};

use heaptide_tests::*;

/// Runs the example with `routes` under steady load for `secs`, then
/// returns `analyzer leaks --format json` over the run.
fn leaks_after_load(instance: &str, routes: &[&str], secs: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let leaky = leaky(
        dir.path(),
        &format!("http://{}", an.addr),
        instance,
        &[
            ("HEAPTIDE_PROFILE_INTERVAL", "1s"),
            ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
        ],
    );
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0usize;
    while Instant::now() < end {
        let route = routes[n % routes.len()].replace("{n}", &(n % 1500).to_string());
        assert_eq!(get(&leaky.url(&route)).0, 200, "{route}");
        n += 1;
        std::thread::sleep(Duration::from_millis(8));
    }
    std::thread::sleep(Duration::from_millis(600));
    let v = leaks_json(&store);
    if v["findings"].as_array().is_some_and(Vec::is_empty) {
        // Said here, while both processes run, so that a failure of the
        // caller's assertions shows what the analyzer had.
        eprintln!(
            "no findings after {n} requests; latest fds {:?}, heap {:?}\n\
             verdicts:\n{}\nanalyzer: {}\nleaky-service: {}",
            latest(&an, "leaky-service", instance, "fds"),
            latest(&an, "leaky-service", instance, "heap.allocated"),
            verdicts(&store),
            tail(&an.stderr()),
            tail(&leaky.stderr()),
        );
    }
    drop(leaky);
    v
}

/// The last lines of a process's log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[test]
fn the_heap_leak_is_found_with_its_function_in_the_top_site() {
    let v = leaks_after_load("leak", &["/leak?kb=16", "/work"], 60);
    let heap = finding(&v, "heap").unwrap_or_else(|| panic!("no heap finding: {v:#}"));
    assert!(heap["slope_per_hour"].as_f64().unwrap() > 0.0);
    assert!(heap["confidence"].as_f64().unwrap() > 0.99, "{heap:#}");
    assert!(
        heap["time_to_exhaustion_seconds"].as_f64().is_some(),
        "{heap:#}"
    );
    let (frames, app) = top_site(heap);
    assert!(
        frames.iter().any(|f| f.contains("leak_request_buffer")),
        "top site: {frames:?}"
    );
    assert!(
        frames[app].contains("leak_request_buffer"),
        "the first frame outside the allocator: {frames:?}"
    );
}

#[test]
fn the_fd_leak_is_found_as_fds_of_kind_file() {
    let v = leaks_after_load("fd", &["/leak-fd", "/work"], 50);
    let fds = finding(&v, "fds").unwrap_or_else(|| panic!("no fd finding: {v:#}"));
    assert_eq!(fds["detail"]["fd_kind"], "file", "{fds:#}");
    assert!(
        fds["limit"].as_f64().unwrap() > 0.0,
        "RLIMIT_NOFILE is the limit: {fds:#}"
    );
    assert!(
        fds["time_to_exhaustion_seconds"].as_f64().is_some(),
        "{fds:#}"
    );
}

#[test]
fn an_fd_leak_in_bursts_is_found_as_a_staircase() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let leaky = leaky(dir.path(), &format!("http://{}", an.addr), "burst", &[]);
    // A burst of 20 leaked files every 8 s amid steady work: 9 steps.
    let start = Instant::now();
    let mut bursts = 0;
    while start.elapsed() < Duration::from_secs(75) {
        if start.elapsed() >= Duration::from_secs(4 + 8 * bursts) {
            assert_eq!(get(&leaky.url("/leak-fd-burst?n=20")).0, 200);
            bursts += 1;
        }
        assert_eq!(get(&leaky.url("/work")).0, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(600));
    let v = leaks_json(&store);
    let fds = finding(&v, "fds").unwrap_or_else(|| panic!("no fd finding: {v:#}"));
    assert!(
        fds["reason"].as_str().unwrap_or("").contains("steps"),
        "judged as a staircase: {fds:#}"
    );
    assert_eq!(fds["detail"]["fd_kind"], "file", "{fds:#}");
    // 20 files every 8 s is 9,000 an hour.
    let rate = fds["slope_per_hour"].as_f64().unwrap();
    assert!((5_000.0..14_000.0).contains(&rate), "{rate} fds/h");
    assert!(fds["severity"].is_string(), "{fds:#}");
    drop(leaky);
}

#[test]
fn a_bounded_cache_alone_is_not_a_leak() {
    let v = leaks_after_load("cache", &["/cache?key={n}", "/work"], 60);
    assert!(
        v["findings"].as_array().unwrap().is_empty(),
        "false positive: {v:#}"
    );
}

/// A leak inside a third-party crate: the example interns about 100 bytes
/// per call with `internment`, which keeps everything it interns, a few
/// hundred KiB/s in all. The top site names the library's function.
#[test]
fn a_leak_inside_a_library_names_the_library_function() {
    let v = leaks_after_load("lib", &["/intern?n=50", "/work"], 60);
    let heap = finding(&v, "heap").unwrap_or_else(|| panic!("no heap finding: {v:#}"));
    let (frames, app) = top_site(heap);
    assert!(
        frames[app].starts_with("internment::") || frames[app].contains("internment::Intern"),
        "the first frame outside the allocator is the library's: {frames:?}"
    );
    assert!(
        frames.iter().any(|f| f.contains("intern_request_ids")),
        "and the caller is on the stack: {frames:?}"
    );
}
