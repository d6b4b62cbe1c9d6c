//! Instruction counts of the leaky-service example serving a fixed
//! request load under callgrind, with and without the agent: what the
//! agent costs each request, counted by valgrind's CPU simulator, so that
//! a 1% difference is resolved on a busy 2-core machine where wall-clock
//! throughput is not.
//!
//! Each service starts under callgrind and is warmed up; then its counts
//! are zeroed (`callgrind_control -z`), the load is sent from this
//! process one request at a time, and the counts are dumped
//! (`callgrind_control -d`). So startup is left out, and every thread of
//! the process is in: the request path, with the allocator's sampling
//! and the age hooks, and the agent's own threads. Their periodic work
//! is left out as in the allocation counts (intervals of an hour, the
//! pause meter's and the tokio probe's tick a second, and the counts
//! zeroed only once the two early heap profiles, at 10 s and 30 s, are
//! stored), since callgrind stretches the wall time it grows with; the
//! wall-clock runs measure it as the agent's CPU.

use std::process::Command;
use std::time::Duration;

use heaptide_tests::{bin, wait_for, Proc};

const MODES: [(&str, &[(&str, &str)]); 4] = [
    (
        "no agent, jemalloc profiling off",
        &[("LEAKY_AGENT", "off"), ("_RJEM_MALLOC_CONF", "prof:false")],
    ),
    (
        "no agent, jemalloc profiling on (libgcc's unwinder)",
        &[("LEAKY_AGENT", "off")],
    ),
    (
        "agent on, frame-pointer unwinder",
        &[
            ("HEAPTIDE_INTERVAL", "1h"),
            ("HEAPTIDE_PROFILE_INTERVAL", "1h"),
            ("HEAPTIDE_PAUSE_TICK", "1s"),
        ],
    ),
    (
        "agent on, libgcc's unwinder",
        &[
            ("HEAPTIDE_INTERVAL", "1h"),
            ("HEAPTIDE_PROFILE_INTERVAL", "1h"),
            ("HEAPTIDE_PAUSE_TICK", "1s"),
            ("HEAPTIDE_UNWINDER", "libgcc"),
        ],
    ),
];

pub(crate) fn run(requests: u64, an: &Proc, dir: &std::path::Path) {
    let endpoint = &format!("http://{}", an.addr);
    let mut counts = Vec::new();
    for (i, (name, env)) in MODES.iter().enumerate() {
        eprintln!("callgrind: the service, {name}");
        let out = dir.join(format!("http.{i}"));
        let mut cmd = Command::new("valgrind");
        // Names in full in every dump: a dump after `-z` may refer to a
        // name the first dump defined.
        cmd.args([
            "--tool=callgrind",
            "--compress-strings=no",
            "--compress-pos=no",
        ])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin("leaky-service"))
        .env("LEAKY_LISTEN", "127.0.0.1:0")
        .env("HEAPTIDE_ENDPOINT", endpoint)
        .env("HEAPTIDE_INSTANCE", format!("callgrind-{i}"))
        .envs(env.iter().copied());
        let mut svc = Proc::start(cmd, dir.join(format!("http.{i}.log")));
        send(&svc, requests / 10);
        if !env.contains(&("LEAKY_AGENT", "off")) {
            early_profiles_stored(an, &format!("callgrind-{i}"));
        }
        control(&svc, "-z");
        send(&svc, requests);
        control(&svc, "-d");
        svc.kill();
        counts.push((*name, summary(&dir.join(format!("http.{i}.1")))));
    }
    let base = counts[0].1 as f64;
    println!("{requests} requests per run (3 in 4 `/work`, 1 in 4 `/cache`)\n");
    println!("| mode | instructions | per request | over no agent |");
    println!("|---|---|---|---|");
    for (name, ir) in counts {
        println!(
            "| {name} | {ir} | {:.0} | {:+.2}% |",
            ir as f64 / requests as f64,
            (ir as f64 / base - 1.0) * 100.0
        );
    }
}

/// Waits until the agent's two early heap profiles are stored: each is a
/// symbolization, periodic work that is not any request's.
fn early_profiles_stored(an: &Proc, instance: &str) {
    let query = format!("/v1/profiles?service=leaky-service&instance={instance}&since=1h");
    wait_for("the early profiles", Duration::from_secs(600), || {
        let (code, body) = an.get(&query);
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let n = v["profiles"].as_array().map_or(0, Vec::len);
        (code == 200 && n >= 2).then_some(())
    });
}

/// `n` requests, one at a time, the overhead benchmark's mix.
fn send(svc: &Proc, n: u64) {
    let http = heaptide_tests::http();
    for k in 0..n {
        let path = if k % 4 == 0 {
            format!("/cache?key={}", k % 1500)
        } else {
            "/work".into()
        };
        let mut r = http.get(&svc.url(&path)).call().expect("request");
        assert_eq!(r.status(), 200);
        let _ = r.body_mut().read_to_string();
    }
}

fn control(svc: &Proc, what: &str) {
    let pid = svc.child.id().to_string();
    let status = Command::new("callgrind_control")
        .args([what, &pid])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("callgrind_control");
    assert!(status.success(), "callgrind_control {what} {pid}");
    // The command is taken at the program's next basic block; the dump
    // is written by then.
    std::thread::sleep(Duration::from_millis(500));
}

/// The `summary:` line of a callgrind dump.
fn summary(file: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary in {}", file.display()))
}
