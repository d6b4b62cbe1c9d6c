//! Allocation profiles with a real process: the leaky example's `/work`
//! allocates about 10 KiB a request and frees it at once, so it holds
//! nothing live, yet the `alloc` flamegraph counts what it allocated, the
//! profiles carry it as `alloc_space` for `go tool pprof`, and the live
//! heap does not show it.
//!
//! Needs Go (`golang-go`), which `test.sh` installs.

use std::process::Command;
use std::time::{Duration, Instant};

use heaptide_tests::*;

/// The bytes a flamegraph SVG gives the frame named `function`: inferno
/// titles each frame `name (N bytes, P%)`; frames of one name add up
/// (not its closures', which are its children and already in its own).
fn frame_bytes(svg: &str, function: &str) -> f64 {
    svg.split("<title>")
        .skip(1)
        .filter_map(|t| t.split("</title>").next())
        .filter(|t| {
            t.strip_prefix(function)
                .is_some_and(|r| r.starts_with(" ("))
        })
        .filter_map(|t| {
            let n = t.rsplit_once(" (")?.1.split(' ').next()?;
            n.replace(',', "").parse::<f64>().ok()
        })
        .sum()
}

#[test]
fn churn_shows_in_the_alloc_view_and_pprof_but_not_in_the_live_heap() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let svc = leaky(
        dir.path(),
        &format!("http://{}", an.addr),
        "al",
        &[
            ("HEAPTIDE_PROFILE_INTERVAL", "1s"),
            ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
        ],
    );
    let from = now_ms();
    let end = Instant::now() + Duration::from_secs(12);
    let mut calls = 0u64;
    while Instant::now() < end {
        assert_eq!(get(&svc.url("/work")).0, 200);
        calls += 1;
    }
    // Every interval of the load ends in a profile a second later.
    std::thread::sleep(Duration::from_secs(3));
    let to = now_ms();
    let scope = "service=leaky-service&instance=al";
    let svg = |kind: &str| {
        let (code, body) = an.get(&format!(
            "/ui/flame.svg?{scope}&kind={kind}&from={from}&to={to}&at={to}&frames=all"
        ));
        assert_eq!(code, 200, "{body}");
        body
    };
    let alloc = svg("alloc");
    let churned = frame_bytes(&alloc, "leaky_service::transient_work");
    // 256 strings of 16 bytes and a vector of 6 KiB each call, sampled
    // every 64 KiB on average: hundreds of samples, so within a factor
    // of the 10 KiB a call.
    let expected = calls as f64 * 10.0 * 1024.0;
    assert!(
        (0.7 * expected..1.4 * expected).contains(&churned),
        "{churned} bytes allocated in transient_work over {calls} calls; expected about {expected}"
    );
    let live = frame_bytes(&svg("live"), "leaky_service::transient_work");
    assert!(
        live < churned / 20.0,
        "transient_work holds {live} bytes live of {churned} allocated"
    );

    // The newest profile as pprof: Go's sample types, the churn in
    // alloc_space over its interval.
    let bytes = http()
        .get(&an.url(&format!("/v1/profile?{scope}&format=pprof")))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    let file = dir.path().join("al.pb.gz");
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw"])
        .arg(&file)
        .env("GOCACHE", dir.path().join("go-cache"))
        .output()
        .expect("go tool pprof; install golang-go (test.sh does)");
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(
        raw.contains("alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes"),
        "sample types: {raw}"
    );
    drop(svc);
}
