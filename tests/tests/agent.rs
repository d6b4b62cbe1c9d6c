//! The agent, linked into the real leaky example, streaming to a real
//! `analyzer serve`.

use std::time::Duration;

use heaptide_tests::*;

const SVC: &str = "leaky-service";

fn setup(instance: &str) -> (tempfile::TempDir, Proc, Proc) {
    setup_with(instance, &[])
}

fn setup_with(instance: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Proc, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let mut env = env.to_vec();
    env.push(("HEAPTIDE_SYMBOL_LINES", "true"));
    let leaky = leaky(dir.path(), &format!("http://{}", an.addr), instance, &env);
    wait_for("first sample", Duration::from_secs(30), || {
        latest(&an, SVC, instance, "fds")
    });
    (dir, an, leaky)
}

fn profiles(an: &Proc, instance: &str) -> Vec<serde_json::Value> {
    get_json(&an.url(&format!(
        "/v1/profiles?service={SVC}&instance={instance}&since=10m"
    )))["profiles"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn leaking_function_is_the_top_growing_heap_site() {
    // A 64 KiB period samples 63% of 64 KiB allocations: the estimate of
    // 200 of them has a relative error near 5%, so 25% is a fair bound.
    let (_dir, an, leaky) = setup_with("heap", &[("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB")]);
    let before = wait_for("a first profile", Duration::from_secs(30), || {
        profiles(&an, "heap")
            .last()
            .and_then(|p| p["ts_ms"].as_i64())
    });
    for _ in 0..200 {
        let (status, _) = get(&leaky.url("/leak?kb=64"));
        assert_eq!(status, 200);
    }
    let sent = now_ms();
    let after = wait_for("a profile after the leak", Duration::from_secs(30), || {
        profiles(&an, "heap")
            .last()
            .and_then(|p| p["ts_ms"].as_i64())
            .filter(|t| *t > sent)
    });
    let diff = get_json(&an.url(&format!(
        "/v1/profile/diff?service={SVC}&instance=heap&from={before}&to={after}"
    )));
    let top = &diff["stacks"][0];
    let names: Vec<&str> = top["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert!(
        names.iter().any(|n| n.contains("leak_request_buffer")),
        "top growing stack is not the leak: {names:?}"
    );
    let located = top["frames"].as_array().unwrap().iter().any(|f| {
        f["function"]
            .as_str()
            .is_some_and(|n| n.contains("leak_request_buffer"))
            && f["file"].as_str().is_some_and(|p| p.ends_with("main.rs"))
            && f["line"].as_u64().is_some_and(|l| l > 0)
    });
    assert!(located, "the leaking frame has no file:line: {top}");
    // 200 x 64 KiB = 12.5 MiB leaked; the unbiased estimate must be close.
    let grown = top["delta_bytes"].as_f64().unwrap();
    let leaked = 200.0 * 64.0 * 1024.0;
    assert!(
        (grown / leaked - 1.0).abs() < 0.25,
        "estimated {grown} bytes for {leaked} leaked"
    );
    // The pprof behind it downloads as gzip.
    let (status, body) = get(&an.url(&format!(
        "/v1/profile?service={SVC}&instance=heap&at={after}&format=folded"
    )));
    assert_eq!(status, 200);
    assert!(
        body.contains("leak_request_buffer"),
        "folded stacks lack the leak"
    );
}

#[test]
fn leaked_fds_show_in_the_count_and_by_kind() {
    let (_dir, an, leaky) = setup("fds");
    let files0 = latest(&an, SVC, "fds", "fds.file").unwrap();
    let total0 = latest(&an, SVC, "fds", "fds").unwrap();
    for _ in 0..40 {
        assert_eq!(get(&leaky.url("/leak-fd")).0, 200);
    }
    wait_for("40 more regular-file fds", Duration::from_secs(20), || {
        let files = latest(&an, SVC, "fds", "fds.file")?;
        (files >= files0 + 40.0).then_some(())
    });
    let total = latest(&an, SVC, "fds", "fds").unwrap();
    assert!(total >= total0 + 40.0, "total fds {total0} -> {total}");
    assert!(
        latest(&an, SVC, "fds", "fds.socket").unwrap() >= 1.0,
        "the listener is a socket"
    );
    assert!(
        latest(&an, SVC, "fds", "tcp.listen").unwrap() >= 1.0,
        "the listener is in LISTEN"
    );
    assert!(latest(&an, SVC, "fds", "limit.nofile.soft").unwrap() > 0.0);
}

#[test]
fn spawned_threads_show_in_the_count_and_by_name() {
    let (_dir, an, leaky) = setup("threads");
    let total0 = latest(&an, SVC, "threads", "threads").unwrap();
    for _ in 0..5 {
        assert_eq!(get(&leaky.url("/spawn-thread")).0, 200);
    }
    wait_for("5 leaky-worker threads", Duration::from_secs(20), || {
        let n = latest(&an, SVC, "threads", "threads.name.leaky-worker")?;
        (n == 5.0).then_some(())
    });
    let total = latest(&an, SVC, "threads", "threads").unwrap();
    assert!(total >= total0 + 5.0, "threads {total0} -> {total}");
}

#[test]
fn a_stopped_process_records_a_pause_of_that_length() {
    let (_dir, an, leaky) = setup("pause");
    let stopped_at = now_ms();
    nix::sys::signal::kill(leaky.pid(), nix::sys::signal::Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(leaky.pid(), nix::sys::signal::Signal::SIGCONT).unwrap();
    let events = || {
        get_json(&an.url(&format!(
            "/v1/pauses?service={SVC}&instance=pause&since=10m"
        )))
    };
    let pause = wait_for_or(
        "the pause event",
        Duration::from_secs(20),
        || format!("{}", events()),
        || {
            let v = get_json(&an.url(&format!(
                "/v1/pauses?service={SVC}&instance=pause&since=10m"
            )));
            v["events"]
                .as_array()?
                .iter()
                .find(|e| e["source"] == "meter" && e["duration_ms"].as_f64() > Some(100.0))
                .cloned()
        },
    );
    let ms = pause["duration_ms"].as_f64().unwrap();
    assert!(
        (250.0..=600.0).contains(&ms),
        "pause of {ms} ms for a 300 ms stop"
    );
    let start = pause["start_ms"].as_i64().unwrap();
    assert!(
        (start - stopped_at).abs() < 500,
        "pause starts at {start}, stop was at {stopped_at}"
    );
    // The tokio probe saw the runtime stall too.
    wait_for("a tokio lag event", Duration::from_secs(10), || {
        let v = get_json(&an.url(&format!(
            "/v1/pauses?service={SVC}&instance=pause&since=10m"
        )));
        v["events"]
            .as_array()?
            .iter()
            .find(|e| e["source"] == "tokio" && e["duration_ms"].as_f64() > Some(100.0))
            .map(|_| ())
    });
    // The interval's histogram carries it too.
    wait_for(
        "max pause in the histogram",
        Duration::from_secs(10),
        || {
            let m = latest(&an, SVC, "pause", "pause.max_ms")?;
            let v = get_json(&an.url(&format!(
                "/v1/series?service={SVC}&instance=pause&metric=pause.max_ms&since=10m"
            )));
            let max = v["points"]
                .as_array()?
                .iter()
                .filter_map(|p| p["value"].as_f64())
                .fold(m, f64::max);
            (max >= 250.0).then_some(())
        },
    );
}

#[test]
fn without_an_analyzer_the_host_runs_on_and_drops_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let addr = unused_fixed_addr();
    let leaky = leaky(
        dir.path(),
        &format!("http://{addr}"),
        "offline",
        &[
            // The smallest queue (one profile's worth), filled by a
            // profile every 100 ms, each large: a 4 KiB sample period
            // keeps many stacks.
            ("HEAPTIDE_QUEUE_BYTES", "256KiB"),
            ("HEAPTIDE_INTERVAL", "50ms"),
            ("HEAPTIDE_PROFILE_INTERVAL", "100ms"),
            ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "4KiB"),
        ],
    );
    // The host answers every request, promptly, while nothing receives.
    for i in 0..300 {
        let t = std::time::Instant::now();
        let (status, _) = get(&leaky.url(if i % 2 == 0 { "/work" } else { "/leak?kb=4" }));
        assert_eq!(status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "request {i} took {:?}",
            t.elapsed()
        );
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // Long enough for the queue to overflow, even on a loaded machine.
    std::thread::sleep(Duration::from_secs(8));
    // Once an analyzer appears, the next batch carries the drop count.
    let store = dir.path().join("late.db");
    let an = analyzer(dir.path(), &store, &addr.to_string(), &[]);
    // The first batch to arrive was sealed before the outage showed; a
    // later one carries the counts.
    let latest_stats = || {
        let v = get(&an.url(&format!("/v1/instances?service={SVC}")));
        let v: serde_json::Value = serde_json::from_str(&v.1).ok()?;
        Some(v["instances"][0]["agent_stats"].clone())
    };
    let stats = wait_for_or(
        "a batch counting drops and failures",
        Duration::from_secs(60),
        || format!("last stats: {:?}", latest_stats()),
        || {
            let s = latest_stats()?;
            (s["dropped_items"].as_u64()? > 0 && s["send_failures"].as_u64()? > 0).then_some(s)
        },
    );
    assert!(
        stats["dropped_items"].as_u64().unwrap() > 0,
        "no drops counted: {stats}"
    );
    assert!(
        stats["send_failures"].as_u64().unwrap() > 0,
        "no send failures counted: {stats}"
    );
    assert!(
        leaky.stderr().is_empty() || !leaky.stderr().contains("panicked"),
        "{}",
        leaky.stderr()
    );
}

#[test]
fn application_pauses_are_named_events() {
    let (_dir, an, leaky) = setup("app-pause");
    assert_eq!(get(&leaky.url("/pause?ms=120")).0, 200);
    let ev = wait_for("the application pause", Duration::from_secs(20), || {
        let v = get_json(&an.url(&format!(
            "/v1/pauses?service={SVC}&instance=app-pause&since=10m"
        )));
        v["events"]
            .as_array()?
            .iter()
            .find(|e| e["source"] == "app")
            .cloned()
    });
    assert_eq!(ev["name"], "leaky-compaction");
    let ms = ev["duration_ms"].as_f64().unwrap();
    assert!((115.0..400.0).contains(&ms), "{ms} ms for a 120 ms pause");
}

#[test]
fn a_token_is_sent_and_without_profiling_the_batches_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let read = dir.path().join("read-token");
    std::fs::write(&read, "r3ad-t0ken").unwrap();
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &[
            "--token-file",
            token.to_str().unwrap(),
            "--read-token-file",
            read.to_str().unwrap(),
        ],
    );
    let _leaky = leaky(
        dir.path(),
        &format!("http://{}", an.addr),
        "no-prof",
        &[
            ("HEAPTIDE_TOKEN", "t0ken"),
            ("_RJEM_MALLOC_CONF", "prof:false"),
        ],
    );
    let inst = wait_for(
        "a batch through the token check",
        Duration::from_secs(30),
        || {
            let (status, body) = an.get(&format!("/v1/instances?service={SVC}"));
            (status == 200)
                .then(|| serde_json::from_str::<serde_json::Value>(&body).ok())
                .flatten()
        },
    );
    let i = &inst["instances"][0];
    assert_eq!(i["heap_profiling"], false, "{i}");
    let reason = i["heap_profiling_reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("prof:true"),
        "the reason says how to switch it on: {reason}"
    );
    // Everything else is still sampled.
    assert!(latest(&an, SVC, "no-prof", "fds").is_some());
    assert!(latest(&an, SVC, "no-prof", "heap.allocated").is_some());
}

/// The newest timestamp of `metric` for `instance`, if any.
fn newest_ms(an: &Proc, instance: &str, metric: &str) -> Option<i64> {
    let v = an.get_json(&format!(
        "/v1/series?service={SVC}&instance={instance}&metric={metric}&since=10m"
    ));
    v["points"].as_array()?.last()?["ts_ms"].as_i64()
}

#[test]
fn at_the_fd_limit_the_agent_still_samples_and_sends() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    // A low soft limit, as a container's would be, set by the shell the
    // service is exec'd from.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "ulimit -n 256 && exec \"$0\""])
        .arg(bin("leaky-service"))
        .env("HEAPTIDE_ENDPOINT", format!("http://{}", an.addr))
        .env("HEAPTIDE_INSTANCE", "limit")
        .env("HEAPTIDE_INTERVAL", "200ms")
        .env("HEAPTIDE_PROFILE_INTERVAL", "1s")
        .env("LEAKY_LISTEN", "127.0.0.1:0");
    let leaky = Proc::start(cmd, dir.path().join("leaky-limit.log"));
    wait_for("first sample", Duration::from_secs(30), || {
        latest(&an, SVC, "limit", "fds")
    });
    assert_eq!(latest(&an, SVC, "limit", "limit.nofile.soft"), Some(256.0));
    // Every descriptor the process has, and every one freed afterwards,
    // as a leak pinned at the limit takes them.
    assert_eq!(get(&leaky.url("/leak-fd-all")).0, 200);
    wait_for("the limit", Duration::from_secs(20), || {
        latest(&an, SVC, "limit", "fds").filter(|n| *n >= 250.0)
    });
    let at_limit = now_ms();
    for metric in ["fds", "process.rss", "threads"] {
        wait_for(
            &format!("{metric} sampled after the limit was reached"),
            Duration::from_secs(20),
            || newest_ms(&an, "limit", metric).filter(|t| *t > at_limit + 1000),
        );
    }
    let fds = latest(&an, SVC, "limit", "fds").unwrap();
    assert!(fds >= 250.0, "the count at the limit is {fds}");
    assert!(latest(&an, SVC, "limit", "threads").unwrap() >= 2.0);
}
