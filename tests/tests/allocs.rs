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

/// A run of the example: an analyzer, and `/work` called for 12 s.
struct Run {
    dir: tempfile::TempDir,
    an: Proc,
    svc: Proc,
    calls: u64,
    from: i64,
    to: i64,
}

fn churn(instance: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let svc = leaky(
        dir.path(),
        &format!("http://{}", an.addr),
        instance,
        &[
            ("HEAPTIDE_INTERVAL", "500ms"),
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
    Run {
        dir,
        an,
        svc,
        calls,
        from,
        to: now_ms(),
    }
}

#[test]
fn churn_shows_in_the_alloc_view_and_pprof_but_not_in_the_live_heap() {
    let Run {
        dir,
        an,
        svc,
        calls,
        from,
        to,
    } = churn("al");
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
    // The service's instances merged (one here): the same sum.
    let (code, merged) = an.get(&format!(
        "/ui/flame.svg?service=leaky-service&kind=alloc&from={from}&to={to}&frames=all"
    ));
    assert_eq!(code, 200, "{merged}");
    assert_eq!(
        frame_bytes(&merged, "leaky_service::transient_work"),
        churned
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

/// `check`'s allocation budget reads the agent's allocation counter
/// against the requests: `/work` allocates about 10 KiB a request, and
/// hyper more for each new connection (tens of KiB in all), so a budget of
/// 2 MiB per 1,000 fails and one of 1 GiB passes.
#[test]
fn check_fails_a_route_that_allocates_past_its_budget() {
    let run = churn("ck");
    let check = |budget: &str| {
        let file = run.dir.path().join("budget.toml");
        std::fs::write(
            &file,
            format!("[defaults]\nalloc_per_1k_requests = \"{budget}\"\n"),
        )
        .unwrap();
        let out = Command::new(bin("analyzer"))
            .args([
                "check",
                "--since",
                "2m",
                "--service",
                "leaky-service",
                "--format",
                "json",
            ])
            .arg("--budget")
            .arg(&file)
            .arg("--store")
            .arg(run.dir.path().join("h.db"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = check("2MiB");
    assert_eq!(code, Some(1), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let item = &v["instances"][0]["items"][0];
    assert_eq!(item["name"], "alloc_per_1k_requests", "{text}");
    // At least transient_work's 10 KiB a request, counted on the
    // service's threads; the agent's own are not counted.
    let measured = item["measured"].as_f64().unwrap();
    assert!(
        (8.0 * 1024.0 * 1024.0..1024.0 * 1024.0 * 1024.0).contains(&measured),
        "{text}"
    );
    let (code, text) = check("1GiB");
    assert_eq!(code, Some(0), "{text}");
    drop(run);
}
