//! Names resolved by the analyzer: the real leaky example, run with
//! `HEAPTIDE_SYMBOLIZE=analyzer`, sends addresses and build-ids only, and
//! `analyzer serve --debug-dir` names its leak from the build-id's debug
//! file: an unstripped copy of the binary, or the separate debug file of
//! a stripped one in a `.build-id` tree.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use heaptide_tests::*;

/// Runs `exe` (a leaky example) leaking under load for `secs`, sending
/// unnamed profiles to an analyzer that searches `debug_dir`; returns
/// `analyzer leaks` and the analyzer's `/metrics`.
fn leak_named_from(
    dir: &Path,
    exe: &Path,
    debug_dir: &Path,
    secs: u64,
) -> (serde_json::Value, String) {
    let store = dir.join("h.db");
    let debug = debug_dir.to_str().unwrap();
    let an = analyzer(dir, &store, "127.0.0.1:0", &["--debug-dir", debug]);
    let leaky = leaky_from(
        exe,
        dir,
        &format!("http://{}", an.addr),
        "sym",
        &[
            ("HEAPTIDE_SYMBOLIZE", "analyzer"),
            ("HEAPTIDE_PROFILE_INTERVAL", "1s"),
            ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
        ],
    );
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0;
    while Instant::now() < end {
        let route = if n % 2 == 0 { "/leak?kb=16" } else { "/work" };
        assert_eq!(get(&leaky.url(route)).0, 200, "{route}");
        n += 1;
        std::thread::sleep(Duration::from_millis(8));
    }
    std::thread::sleep(Duration::from_millis(600));
    let v = leaks_json(&store);
    if finding(&v, "heap").is_none() {
        eprintln!(
            "no heap finding after {n} requests:\n{}\nanalyzer: {}",
            verdicts(&store),
            an.stderr()
        );
    }
    let metrics = an.get("/metrics").1;
    drop(leaky);
    (v, metrics)
}

/// The value of a counter in a Prometheus exposition.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The heap finding's top site names the leaking function with its
/// `file:line`, as the agent would have named it itself.
fn assert_leak_named(v: &serde_json::Value) {
    let heap = finding(v, "heap").unwrap_or_else(|| panic!("no heap finding: {v:#}"));
    let (frames, app) = top_site(heap);
    assert!(
        frames[app].contains("leak_request_buffer"),
        "the first frame outside the allocator: {frames:?}"
    );
    assert!(
        !frames[..=app].iter().any(|f| f.starts_with("0x")),
        "the frames to the leak named: {frames:?}"
    );
    assert!(
        !frames.iter().any(|f| f.starts_with("_rjem_")),
        "jemalloc's own frames dropped: {frames:?}"
    );
    eprintln!(
        "top site, leaf and root: {:?} … {:?}",
        &frames[..app + 1],
        frames.last()
    );
    let at = heap["sites"][0]["app_location"]
        .as_str()
        .unwrap_or_default();
    assert!(
        at.contains(".rs:") && !at.ends_with(":0"),
        "file:line from DWARF: {at:?}"
    );
}

#[test]
fn an_agent_that_names_nothing_has_its_leak_named_from_a_directory_of_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let debug = dir.path().join("binaries");
    std::fs::create_dir(&debug).unwrap();
    // Under a name of its own: found by reading each file's build-id.
    std::fs::copy(bin("leaky-service"), debug.join("leaky-service-1.4")).unwrap();
    // And the shared libraries the example loads, which this test loads
    // too: libc's frames are named as well.
    for lib in shared_libraries() {
        let name = Path::new(&lib).file_name().unwrap();
        std::fs::copy(&lib, debug.join(name)).unwrap();
    }
    let (v, metrics) = leak_named_from(dir.path(), &bin("leaky-service"), &debug, 35);
    assert_leak_named(&v);
    assert!(counter(&metrics, "heaptide_symbolization_passes_total") >= 1.0);
    assert!(counter(&metrics, "heaptide_symbolized_addresses_total") >= 10.0);
    assert_eq!(
        counter(&metrics, "heaptide_unsymbolized_addresses_total"),
        0.0,
        "every build-id of the process had its debug file: libc's too"
    );
}

#[test]
fn a_stripped_binary_is_named_from_its_separate_debug_file() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("leaky-service");
    let debug_file = dir.path().join("leaky-service.debug");
    objcopy(&["--only-keep-debug"], &bin("leaky-service"), &debug_file);
    objcopy(&["--strip-all"], &bin("leaky-service"), &exe);
    let id = build_id(&exe);
    let tree = dir.path().join("debug");
    let at = tree.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&at).unwrap();
    std::fs::rename(&debug_file, at.join(format!("{}.debug", &id[2..]))).unwrap();
    let (v, metrics) = leak_named_from(dir.path(), &exe, &tree, 35);
    assert_leak_named(&v);
    assert!(counter(&metrics, "heaptide_symbolization_passes_total") >= 1.0);
}

/// The shared objects mapped executable into this process.
fn shared_libraries() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut libs: Vec<String> = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')))
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains(".so"))
        .map(str::to_owned)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

fn objcopy(args: &[&str], from: &Path, to: &Path) {
    let ok = Command::new("objcopy")
        .args(args)
        .arg(from)
        .arg(to)
        .status()
        .expect("objcopy (binutils) runs")
        .success();
    assert!(ok, "objcopy {args:?}");
}

/// The GNU build-id of the ELF file at `path`, from `readelf -n`.
fn build_id(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build-id in {}: {text}", path.display()))
        .trim()
        .to_owned()
}

/// With no debug file anywhere, the analyzer asks one agent of two for
/// its binary; it uploads it once, and the next profiles of both are
/// named, soon after.
#[test]
fn the_analyzer_asks_one_agent_for_its_binary_and_names_every_instance() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let endpoint = format!("http://{}", an.addr);
    let env = [
        ("HEAPTIDE_SYMBOLIZE", "analyzer"),
        ("HEAPTIDE_PROFILE_INTERVAL", "1s"),
        ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
    ];
    let a = leaky(dir.path(), &endpoint, "up-a", &env);
    let b = leaky(dir.path(), &endpoint, "up-b", &env);
    let start = Instant::now();
    let mut named_after = None;
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(40) {
        for p in [&a, &b] {
            let route = if n % 2 == 0 { "/leak?kb=16" } else { "/work" };
            assert_eq!(get(&p.url(route)).0, 200, "{route}");
        }
        n += 1;
        if named_after.is_none() && n % 50 == 0 {
            let m = an.get("/metrics").1;
            if counter(&m, "heaptide_symbolized_addresses_total") > 0.0 {
                named_after = Some(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(8));
    }
    std::thread::sleep(Duration::from_millis(600));
    // Each build-id (the binary's, libc's, ...) uploaded once, by one of
    // the two.
    let log = an.stderr();
    let uploads: Vec<(&str, &str)> = log
        .lines()
        .filter_map(|l| {
            let rest = l.split("kept the debug file of build-id ").nth(1)?;
            Some((rest.split(' ').next()?, rest.rsplit(' ').next()?))
        })
        .collect();
    let mut ids: Vec<&str> = uploads.iter().map(|u| u.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        uploads.len(),
        "a build-id uploaded twice: {uploads:?}"
    );
    let exe_id = build_id(&bin("leaky-service"));
    assert!(ids.contains(&exe_id.as_str()), "{uploads:?}");
    // The agent sent what names addresses, not the code and data.
    let kept = std::fs::metadata(dir.path().join("h.db.debug").join(&exe_id)).unwrap();
    let whole = std::fs::metadata(bin("leaky-service")).unwrap();
    assert!(
        kept.len() < whole.len(),
        "{} of {}",
        kept.len(),
        whole.len()
    );
    let metrics = an.get("/metrics").1;
    assert_eq!(
        counter(&metrics, "heaptide_debuginfo_uploads_total"),
        uploads.len() as f64
    );
    let named_after = named_after.expect("addresses named");
    eprintln!("first addresses named {named_after:?} after the start");
    assert!(named_after < Duration::from_secs(30), "{named_after:?}");
    let v = leaks_json(&store);
    for instance in ["up-a", "up-b"] {
        let heap = finding_of(&v, "heap", instance);
        let (frames, app) = top_site(heap);
        assert!(
            frames[app].contains("leak_request_buffer"),
            "{instance}: {frames:?}"
        );
    }
    drop((a, b));
}
